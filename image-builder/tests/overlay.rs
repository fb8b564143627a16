//! The appliance's own scripts in rootfs-overlay/, run for real against fixture command lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn overlay(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rootfs-overlay").join(path)
}

#[test]
fn cairn_ip_generator_writes_static_networkd_config() {
    struct Case {
        cmdline: &'static str,
        file: Option<&'static str>,
    }
    let cases = [
        Case { cmdline: "quiet splash", file: None },
        // boot.ipxe passes an empty value when no address is set: DHCP stays.
        Case { cmdline: "console=ttyS0 cairn.ip= cairn.join=", file: None },
        Case {
            cmdline: "cairn.ip=10.0.0.5/24,10.0.0.1,192.0.2.53",
            file: Some("[Match]\nName=en* eth*\nType=ether\n\n[Network]\nAddress=10.0.0.5/24\nGateway=10.0.0.1\nDNS=192.0.2.53\n"),
        },
        Case {
            cmdline: "x cairn.ip=10.9.0.1/24,,,enp0s4 y",
            file: Some("[Match]\nName=enp0s4\nType=ether\n\n[Network]\nAddress=10.9.0.1/24\n"),
        },
    ];
    let generator = overlay("usr/lib/systemd/system-generators/cairn-ip-generator");
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, c.cmdline).unwrap();
        let net = dir.path().join("network");
        let status = Command::new("sh")
            .arg(&generator)
            .arg(dir.path().join("gen"))
            .env("CAIRN_CMDLINE", &cmdline)
            .env("CAIRN_NETWORK_DIR", &net)
            .status()
            .unwrap();
        assert!(status.success(), "{:?}", c.cmdline);
        let written = std::fs::read_to_string(net.join("10-cairn-static.network")).ok();
        assert_eq!(written.as_deref(), c.file, "{:?}", c.cmdline);
    }
}

#[test]
fn agent_unit_and_presets_are_consistent() {
    let unit = std::fs::read_to_string(overlay("usr/lib/systemd/system/cairn-agent.service")).unwrap();
    for line in ["Type=notify", "Restart=always", "ExecStart=/usr/bin/cairn agent", "StateDirectoryMode=0711"] {
        assert!(unit.lines().any(|l| l == line), "cairn-agent.service lacks {line}");
    }
    // Ordered after libvirt's socket, never waiting on libvirtd itself.
    assert!(!unit.contains("libvirtd.service"), "the API must not wait on libvirtd");
    let presets = std::fs::read_to_string(overlay("usr/lib/systemd/system-preset/10-cairn.preset")).unwrap();
    for line in ["enable cairn-agent.service", "disable libvirtd-tls.socket", "disable ssh.service"] {
        assert!(presets.lines().any(|l| l == line), "presets lack {line}");
    }
    let config = std::fs::read_to_string(overlay("etc/cairn/config.toml")).unwrap();
    assert!(config.contains("console_banner = true"));
}
