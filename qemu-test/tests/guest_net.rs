//! The agent's real-kernel network tests (`agent/tests/net_kernel.rs`) inside a QEMU guest
//! booted with Debian's kernel, which has the 802.1Q VLAN support the build machines' kernel
//! lacks: VLAN isolation across a trunk, broadcast containment, DHCP over a VLAN.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_qemu_test::guest::{cargo_test_binary, GuestKernel, GuestRun};
use std::path::PathBuf;

#[test]
fn network_tests_pass_in_a_guest_with_vlans() {
    let binary = cargo_test_binary("cairn-agent", "net_kernel").unwrap();
    let kernel = GuestKernel::debian().unwrap();
    let dnsmasq = cairn_agent::net::dhcp::Dhcp::find_dnsmasq().expect("dnsmasq-base (make test-deps)");
    let mut run = GuestRun::new(kernel, binary);
    run.args = vec!["--test-threads=1".into(), "--nocapture".into()];
    run.env = vec![("CAIRN_REQUIRE_VLAN".into(), "1".into())];
    run.modules = ["llc", "stp", "garp", "mrp", "8021q", "bridge", "veth", "dummy", "tun"].map(String::from).to_vec();
    run.tools = vec![dnsmasq, PathBuf::from("/usr/bin/cpio")].into_iter().filter(|p| p.exists()).collect();
    let out = run.run().unwrap();
    let console = &out.console;
    assert_eq!(out.code, Some(0), "the network tests failed in the guest:\n{console}");
    // Output of dnsmasq may come between "test NAME ..." and "ok": count instead.
    assert!(console.contains("test result: ok. 4 passed; 0 failed"), "all four ran and passed:\n{console}");
    for test in [
        "vlans_isolate_across_two_hosts",
        "dhcp_gives_a_port_its_address",
        "flat_network_on_a_veth_uplink",
        "link_kinds_round_trip",
    ] {
        assert!(console.contains(&format!("test {test} ...")), "{test} did not run in the guest:\n{console}");
    }
    assert!(!console.contains("SKIP"), "nothing may be skipped in the guest:\n{console}");
    assert!(console.contains("DHCPACK"), "dnsmasq answered in the guest:\n{console}");
}
