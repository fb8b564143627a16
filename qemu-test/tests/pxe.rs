//! Network boot of the PXE artifacts through QEMU's built-in DHCP/TFTP and the NIC's iPXE ROM,
//! two appliances on one virtual LAN (a QEMU socket network on loopback multicast), each
//! checking the other's API from inside with `cairn check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_qemu_test::{free_port, image_dir, Appliance, Boot, Media};
use std::path::Path;
use std::time::{Duration, Instant};

/// A TFTP root for one node: the PXE artifacts, and the shipped boot.ipxe with `cairn_ip` set
/// and extra kernel arguments.
fn tftp_root(dir: &Path, ip: &str, extra_args: &str) {
    let out = image_dir();
    for f in ["vmlinuz", "initrd"] {
        let src = out.join(f);
        assert!(src.exists(), "{} is missing: run `make image`", src.display());
        std::os::unix::fs::symlink(&src, dir.join(f)).unwrap();
    }
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    assert!(script.contains("isset ${cairn_ip} || set cairn_ip") && script.contains("cairn.ip=${cairn_ip}"));
    let script = script
        .replace("isset ${cairn_ip} || set cairn_ip", &format!("set cairn_ip {ip}"))
        .replace("cairn.ip=${cairn_ip}", &format!("cairn.ip=${{cairn_ip}} {extra_args}"));
    std::fs::write(dir.join("boot.ipxe"), script).unwrap();
}

fn lan(mcast_port: u16, last: u8) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("socket,id=lan,mcast=230.0.0.1:{mcast_port},localaddr=127.0.0.1"),
        "-device".into(),
        format!("virtio-net-pci,netdev=lan,addr=0x4,mac=52:54:00:00:09:{last:02x}"),
    ]
}

/// The kernel argument that runs the image's `cairn-check@HOST.service` once the node is up.
fn check_on_boot(host: &str) -> String {
    format!("systemd.wants=cairn-check@{host}.service")
}

fn wait_for_line(app: &Appliance, prefix: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = app.console().lines().find(|l| l.contains(prefix)) {
            return line.to_owned();
        }
        assert!(start.elapsed() < timeout, "{}", app.fail(&format!("no {prefix:?} line within {timeout:?}")));
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn two_pxe_booted_appliances_reach_each_other() {
    let port = free_port().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tftp_root(dir_a.path(), "10.9.0.1/24,,,enp0s4", &check_on_boot("10.9.0.2"));
    let mut boot_a = Boot::new(Media::Pxe { dir: dir_a.path().into() });
    boot_a.extra = lan(port, 1);
    let a = Appliance::boot(&boot_a).unwrap();
    eprintln!("PXE node A: ready after {:.1} s", a.ready_after.as_secs_f64());
    let console = a.console();
    assert!(console.contains("STATE IS IN MEMORY ONLY"), "a PXE node says loudly that it keeps state in memory");

    tftp_root(dir_b.path(), "10.9.0.2/24,,,enp0s4", &check_on_boot("10.9.0.1"));
    let mut boot_b = Boot::new(Media::Pxe { dir: dir_b.path().into() });
    boot_b.extra = lan(port, 2);
    let b = Appliance::boot(&boot_b).unwrap();
    eprintln!("PXE node B: ready after {:.1} s", b.ready_after.as_secs_f64());

    // Each reached the other over the LAN and saw the CA the other showed on its console.
    let from_b = wait_for_line(&b, "cairn check:", Duration::from_secs(300));
    assert!(
        from_b.contains("https://10.9.0.1 reachable")
            && from_b.contains(&a.fingerprint)
            && from_b.contains("/healthz 200"),
        "{from_b}"
    );
    let from_a = wait_for_line(&a, "cairn check:", Duration::from_secs(300));
    assert!(
        from_a.contains("https://10.9.0.2 reachable")
            && from_a.contains(&b.fingerprint)
            && from_a.contains("/healthz 200"),
        "{from_a}"
    );
}
