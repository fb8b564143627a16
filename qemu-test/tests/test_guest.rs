//! The compute tests' guest image: built from Debian packages, it boots under plain QEMU (TCG,
//! SeaBIOS), prints its marker and its CPU's virtualization flags, gets an address by DHCP
//! from QEMU's user network, and reads a config drive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_qemu_test::guest::{test_guest_image, TEST_GUEST_MARK};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn test_guest_boots_gets_dhcp_and_reads_its_config_drive() {
    let image = test_guest_image().unwrap();
    let size = std::fs::metadata(&image).unwrap().len();
    eprintln!("test guest {} ({:.1} MiB)", image.display(), size as f64 / 1048576.0);
    assert!(size < 32 << 20, "a small image: {size} bytes");
    let dir = tempfile::tempdir().unwrap();
    // A config drive as Nova writes one (ISO 9660, label config-2), made with xorriso.
    let cd = dir.path().join("cd");
    std::fs::create_dir_all(cd.join("openstack/latest")).unwrap();
    std::fs::write(
        cd.join("openstack/latest/meta_data.json"),
        r#"{"uuid": "u", "hostname": "vm-from-config", "public_keys": {"k1": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt t"}}"#,
    )
    .unwrap();
    std::fs::write(cd.join("openstack/latest/user_data"), "hello from user data\n").unwrap();
    let iso = dir.path().join("config.iso");
    let made = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-r", "-V", "config-2", "-o"])
        .arg(&iso)
        .arg(&cd)
        .status()
        .expect("xorriso (package xorriso)");
    assert!(made.success());
    let console = dir.path().join("console.log");
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=tcg", "-cpu", "max", "-m", "256", "-display", "none", "-no-user-config"])
        .args(["-serial", &format!("file:{}", console.display())])
        .args(["-drive", &format!("if=virtio,format=qcow2,file={},snapshot=on", image.display())])
        .args(["-drive", &format!("if=virtio,format=raw,readonly=on,file={}", iso.display())])
        .args(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default().replace('\r', "");
        if text.contains(&format!("{TEST_GUEST_MARK} ready")) {
            break text;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the guest did not get ready in 300 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("ready after {:.1} s", started.elapsed().as_secs_f64());
    let line = |what: &str| {
        text.lines()
            .find_map(|l| l.split_once(&format!("{TEST_GUEST_MARK} {what}")).map(|(_, r)| r.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `{what}` line:\n{text}"))
    };
    assert!(text.contains(&format!("{TEST_GUEST_MARK} booted")));
    // -cpu max under TCG offers svm; the flags line says what the guest sees.
    assert!(line("cpu-flags:").contains("svm"), "{text}");
    assert_eq!(line("dhcp eth0:"), "10.0.2.15", "QEMU's user network hands out 10.0.2.15");
    assert_eq!(line("config-drive hostname:"), "vm-from-config");
    assert!(line("config-drive key:").starts_with("ssh-ed25519 AAAAC3"), "{text}");
    assert_eq!(line("config-drive user-data:"), "hello from user data");
}
