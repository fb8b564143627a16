//! The network reconciler and DHCP against a real kernel, in network namespaces these tests
//! create and remove. Needs root. Bridges, veths and DHCP run on any Linux; the VLAN test needs
//! 802.1Q, which the build machines' kernel lacks: there it prints why it skips, and
//! `qemu-test/tests/guest_net.rs` runs this binary inside a QEMU guest with Debian's kernel
//! (`CAIRN_REQUIRE_VLAN=1` turns the skip into a failure).

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use cairn_agent::model::network::{
    Cidr, FixedIp, IpRequest, Mac, Network, NetworkType, Port, Segment, Subnet, DHCP_OWNER,
};
use cairn_agent::net::dhcp::{self, Dhcp};
use cairn_agent::net::reconcile::{self, bridge_name, Plan, WantNet, OWNER_ALIAS};
use cairn_agent::state::raft::Replicated;
use cairn_agent::state::NetworkCommand;
use cairn_agent::state::{Command, Store};
use cairn_agent::sys::netlink::{IfAddr, Netlink, NetlinkError, NewLink, Route, RtNetlink};
use cairn_agent::sys::netns::{self, NetNs};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A namespace removed when dropped.
struct TestNs {
    ns: NetNs,
}

impl TestNs {
    fn new(tag: &str) -> Self {
        let name = format!("cairn-t{}-{tag}", std::process::id());
        let _ = netns::delete(&name);
        TestNs { ns: NetNs::ensure(&name).unwrap() }
    }
    fn nl(&self) -> RtNetlink {
        RtNetlink::connect_in(&self.ns).unwrap()
    }
    fn name(&self) -> &str {
        self.ns.name()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = netns::delete(self.ns.name());
    }
}

async fn index(nl: &RtNetlink, name: &str) -> u32 {
    nl.links().await.unwrap().into_iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no link {name}")).index
}

async fn up(nl: &RtNetlink, name: &str) {
    nl.set_up(index(nl, name).await, true).await.unwrap();
}

async fn lo_up(ns: &TestNs) {
    up(&ns.nl(), "lo").await;
}

/// A veth pair: `a` stays in `ns_a`, `b` moves to `ns_b`; both up.
async fn veth(ns_a: &TestNs, a: &str, ns_b: &TestNs, b: &str) {
    let nl = ns_a.nl();
    nl.add_link(a, NewLink::Veth { peer: b.into() }, None).await.unwrap();
    nl.set_netns(index(&nl, b).await, &ns_b.ns).await.unwrap();
    up(&nl, a).await;
    up(&ns_b.nl(), b).await;
}

/// Attaches a "VM" namespace to a bridge in `host` through a veth (`eth0` inside the VM).
async fn attach_vm(host: &TestNs, bridge: &str, vm: &TestNs, tap: &str, ip: Option<&str>, mac: Option<[u8; 6]>) {
    veth(host, tap, vm, "eth0").await;
    let hnl = host.nl();
    hnl.set_master(index(&hnl, tap).await, Some(index(&hnl, bridge).await)).await.unwrap();
    let vnl = vm.nl();
    let eth0 = index(&vnl, "eth0").await;
    if let Some(m) = mac {
        vnl.set_up(eth0, false).await.unwrap();
        vnl.set_mac(eth0, m).await.unwrap();
        vnl.set_up(eth0, true).await.unwrap();
    }
    if let Some(ip) = ip {
        vnl.add_address(eth0, IfAddr { ip: ip.parse().unwrap(), prefix: 24 }).await.unwrap();
    }
    lo_up(vm).await;
}

/// Whether a UDP datagram from `from` reaches `to_ip` in `to` and the echo comes back.
fn udp_reaches(from: &TestNs, to: &TestNs, to_ip: &str) -> bool {
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let listener = to
        .ns
        .run(move || {
            let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
            s
        })
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, peer)) = listener.recv_from(&mut buf) {
            let _ = listener.send_to(&buf[..n], peer);
        }
    });
    let target: SocketAddr = format!("{to_ip}:{port}").parse().unwrap();
    let got = from
        .ns
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..6 {
                // The first datagrams may wait on ARP.
                let _ = s.send_to(b"cairn-ping", target);
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return &buf[..n] == b"cairn-ping";
                }
            }
            false
        })
        .unwrap();
    let _ = echo.join();
    got
}

/// Listens with a raw packet socket on `iface` in `ns` for a frame holding `marker`.
fn capture(ns: &TestNs, iface: &str, marker: &'static [u8], for_how_long: Duration) -> std::thread::JoinHandle<bool> {
    let file = ns.ns.file().try_clone().unwrap();
    let iface = iface.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2)/bind(2)/setsockopt(2)/recv(2) calls on a descriptor this
        // thread owns, with buffers that outlive the calls.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let name = std::ffi::CString::new(iface).unwrap();
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind packet socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + for_how_long;
            let mut buf = [0u8; 2048];
            let mut seen = false;
            while Instant::now() < deadline && !seen {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n > 0 {
                    seen = buf[..n as usize].windows(marker.len()).any(|w| w == marker);
                }
            }
            libc::close(fd);
            seen
        }
    });
    ready_rx.recv().unwrap();
    h
}

/// Sends UDP broadcasts carrying `marker` from `ns` to the subnet broadcast address `to`.
fn broadcast(ns: &TestNs, to: Ipv4Addr, marker: &'static [u8]) {
    ns.ns
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_broadcast(true).unwrap();
            for _ in 0..5 {
                s.send_to(marker, (to, 9999)).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .unwrap();
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox is missing: `make test-deps` installs it")
}

/// Runs `busybox ARGS` inside `ns`; returns whether it succeeded.
fn busybox_in(ns: &TestNs, args: &[&str]) -> bool {
    let fd = ns.ns.file().as_raw_fd();
    let mut cmd = std::process::Command::new(busybox());
    cmd.args(args).stdout(std::process::Stdio::null());
    // SAFETY: only setns(2) between fork and exec, on a descriptor the parent keeps open.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.status().unwrap().success()
}

/// ICMP echo (busybox ping) from `from` to `ip`.
fn pings(from: &TestNs, ip: &str) -> bool {
    busybox_in(from, &["ping", "-c", "2", "-W", "2", ip])
}

/// Runs busybox's DHCP client in `vm` on eth0; returns the address it was offered.
fn dhcp_client(vm: &TestNs) -> Option<IpAddr> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    let out = dir.path().join("lease");
    std::fs::write(&script, format!("#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" > {}\nexit 0\n", out.display()))
        .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.to_string_lossy().into_owned();
    let ok = busybox_in(vm, &["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "1", "-s", &script]);
    eprintln!("udhcpc succeeded: {ok}");
    std::fs::read_to_string(&out).ok().and_then(|s| s.trim().parse().ok())
}

fn dnsmasq() -> PathBuf {
    Dhcp::find_dnsmasq().expect("dnsmasq is missing: `make test-deps` installs dnsmasq-base")
}

// ---- the state the DHCP server reads

fn network(id: &str, ty: NetworkType, vid: Option<u16>) -> Network {
    let seg = Segment {
        network_type: ty,
        physical_network: "physnet1".into(),
        segmentation_id: vid.map(|v: u16| cairn_agent::model::network::check_vlan(v.into()).unwrap()),
    };
    Network::new(id, id, "p", seg, 0)
}

fn port(id: &str, net: &str, mac: Mac, owner: &str) -> Port {
    let mut p = Port::new(id, net, "p", mac, 0);
    p.device_owner = owner.into();
    p
}

/// A state with one network, a DHCP-enabled /24 and a VM port; returns the VM port.
async fn state_with_port(r: &Replicated, net: Network, cidr: &str, vm_mac: Mac) -> Port {
    let net_id = net.id.clone();
    r.propose(Command::Network(NetworkCommand::CreateNetwork { network: net, auto_vlan: None }))
        .await
        .unwrap()
        .unwrap();
    let c: Cidr = cidr.parse().unwrap();
    let mut subnet = Subnet::new(&format!("{net_id}-sub"), &net_id, "p", c, 0);
    subnet.dns_nameservers = vec!["192.0.2.53".parse().unwrap()];
    let dhcp_port = port(&format!("{net_id}-dhcp"), &net_id, Mac([0xfa, 0x16, 0x3e, 0xd0, 0, 1]), DHCP_OWNER);
    r.propose(Command::Network(NetworkCommand::CreateSubnet { subnet: Box::new(subnet), dhcp_port: Some(dhcp_port) }))
        .await
        .unwrap()
        .unwrap();
    let vm = port(&format!("{net_id}-vm"), &net_id, vm_mac, "compute:nova");
    r.propose(Command::Network(NetworkCommand::CreatePort { port: vm.clone(), ips: None })).await.unwrap().unwrap();
    r.store().view().unwrap().port(&vm.id).unwrap().unwrap()
}

fn ip_of(p: &Port) -> IpAddr {
    let FixedIp { ip_address, .. } = p.fixed_ips[0].clone();
    ip_address
}

// ---- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_network_on_a_veth_uplink() {
    common::require_root("flat_network_on_a_veth_uplink");
    let host = TestNs::new("flat-h");
    let peer = TestNs::new("flat-p");
    veth(&host, "eth1", &peer, "peer1").await;
    lo_up(&host).await;
    let nl = host.nl();
    let eth1 = index(&nl, "eth1").await;
    let addr = IfAddr { ip: "198.51.100.10".parse().unwrap(), prefix: 24 };
    nl.add_address(eth1, addr).await.unwrap();
    let gw = Route {
        dst: "0.0.0.0".parse().unwrap(),
        prefix: 0,
        gateway: Some("198.51.100.1".parse().unwrap()),
        metric: None,
    };
    nl.add_route(eth1, gw).await.unwrap();
    let pnl = peer.nl();
    pnl.add_address(index(&pnl, "peer1").await, IfAddr { ip: "198.51.100.1".parse().unwrap(), prefix: 24 })
        .await
        .unwrap();
    // An operator's own bridge, which Cairn must never touch.
    nl.add_link("br-ops", NewLink::Bridge, None).await.unwrap();

    let want = [WantNet { network_id: "f1a7-network-id".into(), uplink: "eth1".into(), vlan: None, mtu: 1500 }];
    let plan = reconcile::reconcile(&nl, &want).await.unwrap();
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let br = bridge_name("f1a7-network-id");
    let links = nl.links().await.unwrap();
    let bridge = links.iter().find(|l| l.name == br).unwrap();
    assert_eq!(bridge.alias.as_deref(), Some(OWNER_ALIAS));
    assert_eq!(links.iter().find(|l| l.name == "eth1").unwrap().master, Some(bridge.index));
    assert_eq!(nl.addresses(bridge.index).await.unwrap(), [addr], "the address moved to the bridge");
    assert!(nl.addresses(eth1).await.unwrap().is_empty());
    assert!(nl.routes(bridge.index).await.unwrap().contains(&gw), "the default route moved too");
    assert!(udp_reaches(&host, &peer, "198.51.100.1"), "management connectivity kept through the bridge");
    assert!(pings(&host, "198.51.100.1"));

    // Second run and a restart (a new netlink connection): nothing to do.
    assert_eq!(reconcile::reconcile(&nl, &want).await.unwrap(), Plan::default());
    assert_eq!(reconcile::reconcile(&host.nl(), &want).await.unwrap(), Plan::default());

    // Deleting the network gives the uplink back its address and route.
    reconcile::reconcile(&nl, &[]).await.unwrap();
    let links = nl.links().await.unwrap();
    assert!(!links.iter().any(|l| l.name == br));
    assert!(links.iter().any(|l| l.name == "br-ops"), "the operator's bridge survived");
    assert_eq!(links.iter().find(|l| l.name == "eth1").unwrap().master, None);
    assert_eq!(nl.addresses(eth1).await.unwrap(), [addr]);
    assert!(nl.routes(eth1).await.unwrap().contains(&gw));
    assert!(udp_reaches(&host, &peer, "198.51.100.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhcp_gives_a_port_its_address() {
    common::require_root("dhcp_gives_a_port_its_address");
    let host = TestNs::new("dh-h");
    let up_peer = TestNs::new("dh-u");
    let vm = TestNs::new("dh-vm");
    veth(&host, "eth1", &up_peer, "peer1").await;
    lo_up(&host).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
    let net_id = format!("d{}-flat-net", std::process::id());
    let mac = Mac([0xfa, 0x16, 0x3e, 0x12, 0x34, 0x56]);
    let vm_port = state_with_port(&r, network(&net_id, NetworkType::Flat, None), "10.77.0.0/24", mac).await;

    let nl = host.nl();
    let want = [WantNet { network_id: net_id.clone(), uplink: "eth1".into(), vlan: None, mtu: 1500 }];
    reconcile::reconcile(&nl, &want).await.unwrap();
    let mut server = Dhcp::new(dnsmasq(), dir.path().join("dhcp"), None);
    let built = [net_id.as_str()].into_iter().collect();
    server.sync(&nl, &r.store().view().unwrap(), &built).await.unwrap();
    let pid = server.pid(&net_id).expect("dnsmasq runs");
    attach_vm(&host, &bridge_name(&net_id), &vm, "tapvm0", None, Some(mac.0)).await;
    assert_eq!(dhcp_client(&vm), Some(ip_of(&vm_port)), "the VM got its port's address by DHCP");

    // Idempotent: a second sync keeps the same process; a dead server is restarted.
    server.sync(&nl, &r.store().view().unwrap(), &built).await.unwrap();
    assert_eq!(server.pid(&net_id), Some(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.reap();
    let new_pid = server.pid(&net_id).unwrap();
    assert_ne!(new_pid, pid, "restarted after it died");
    assert_eq!(dhcp_client(&vm), Some(ip_of(&vm_port)), "and it serves again");

    // A new port is served after a reload (SIGHUP, same process).
    let mac2 = Mac([0xfa, 0x16, 0x3e, 0x12, 0x34, 0x57]);
    r.propose(Command::Network(NetworkCommand::CreatePort {
        port: port("second", &net_id, mac2, "compute:nova"),
        ips: None,
    }))
    .await
    .unwrap()
    .unwrap();
    server.sync(&nl, &r.store().view().unwrap(), &built).await.unwrap();
    assert_eq!(server.pid(&net_id), Some(new_pid), "reloaded, not restarted");
    let second = r.store().view().unwrap().port("second").unwrap().unwrap();
    let vnl = vm.nl();
    let eth0 = index(&vnl, "eth0").await;
    vnl.set_up(eth0, false).await.unwrap();
    vnl.set_mac(eth0, mac2.0).await.unwrap();
    vnl.set_up(eth0, true).await.unwrap();
    assert_eq!(dhcp_client(&vm), Some(ip_of(&second)));

    // A second subnet changes dnsmasq's ranges: it is restarted (new process) and serves a port
    // of the new subnet.
    let sub2 = Subnet::new(&format!("{net_id}-sub2"), &net_id, "p", "10.78.0.0/24".parse().unwrap(), 0);
    let dhcp_template = port("unused", &net_id, Mac([0xfa, 0x16, 0x3e, 0xd0, 0, 2]), DHCP_OWNER);
    r.propose(Command::Network(NetworkCommand::CreateSubnet {
        subnet: Box::new(sub2.clone()),
        dhcp_port: Some(dhcp_template),
    }))
    .await
    .unwrap()
    .unwrap();
    let mac3 = Mac([0xfa, 0x16, 0x3e, 0x12, 0x34, 0x58]);
    let want_sub2 = [IpRequest { subnet_id: Some(sub2.id.clone()), ip_address: None }];
    r.propose(Command::Network(NetworkCommand::CreatePort {
        port: port("third", &net_id, mac3, "compute:nova"),
        ips: Some(want_sub2.to_vec()),
    }))
    .await
    .unwrap()
    .unwrap();
    server.sync(&nl, &r.store().view().unwrap(), &built).await.unwrap();
    let restarted = server.pid(&net_id).expect("dnsmasq runs");
    assert_ne!(restarted, new_pid, "a subnet change restarts dnsmasq");
    let third = r.store().view().unwrap().port("third").unwrap().unwrap();
    assert!(ip_of(&third).to_string().starts_with("10.78.0."), "{third:?}");
    vnl.set_up(eth0, false).await.unwrap();
    vnl.set_mac(eth0, mac3.0).await.unwrap();
    vnl.set_up(eth0, true).await.unwrap();
    assert_eq!(dhcp_client(&vm), Some(ip_of(&third)), "served on the new subnet");
    let new_pid = restarted;

    // Network gone: the server, its namespace and its files go.
    for p in ["third".to_string(), "second".to_string(), vm_port.id.clone()] {
        r.propose(Command::Network(NetworkCommand::DeletePort { id: p })).await.unwrap().unwrap();
    }
    r.propose(Command::Network(NetworkCommand::DeleteNetwork { id: net_id.clone() })).await.unwrap().unwrap();
    server.sync(&nl, &r.store().view().unwrap(), &Default::default()).await.unwrap();
    assert_eq!(server.pid(&net_id), None);
    assert!(!NetNs::exists(&dhcp::namespace(&net_id)), "namespace removed");
    assert!(std::fs::metadata(format!("/proc/{new_pid}")).is_err() || !proc_is_dnsmasq(new_pid), "no dnsmasq left");
    reconcile::reconcile(&nl, &[]).await.unwrap();
    let left: Vec<String> = nl
        .links()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.alias.as_deref() == Some(OWNER_ALIAS))
        .map(|l| l.name)
        .collect();
    assert!(left.is_empty(), "links left behind: {left:?}");
    r.shutdown().await;
}

fn proc_is_dnsmasq(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("dnsmasq"))
}

/// Whether this kernel makes VLAN devices (probed in a scratch namespace).
async fn kernel_has_vlans() -> bool {
    let ns = TestNs::new("probe");
    let nl = ns.nl();
    // Not on lo: loopback devices never carry VLANs, whatever the kernel.
    nl.add_link("probe0", NewLink::Veth { peer: "probe1".into() }, None).await.unwrap();
    let parent = index(&nl, "probe0").await;
    match nl.add_link("probe0.5", NewLink::Vlan { parent, id: 5 }, None).await {
        Ok(()) => true,
        Err(NetlinkError::Request { .. }) => false,
        Err(e) => panic!("probing VLAN support: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlans_isolate_across_two_hosts() {
    common::require_root("vlans_isolate_across_two_hosts");
    if !kernel_has_vlans().await {
        assert!(
            std::env::var_os("CAIRN_REQUIRE_VLAN").is_none(),
            "CAIRN_REQUIRE_VLAN is set but this kernel makes no VLAN devices"
        );
        eprintln!(
            "SKIP vlans_isolate_across_two_hosts: this kernel has no 802.1Q VLAN support; \
             qemu-test/tests/guest_net.rs runs this test inside a QEMU guest with Debian's kernel"
        );
        return;
    }
    // Two hosts joined by a trunk (a veth pair standing in for the switch).
    let (h1, h2) = (TestNs::new("h1"), TestNs::new("h2"));
    veth(&h1, "trunk1", &h2, "trunk2").await;
    let (n100, n200) = (format!("v{}-net-100", std::process::id()), format!("v{}-net-200", std::process::id()));
    let want_on = |uplink: &str| {
        [
            WantNet { network_id: n100.clone(), uplink: uplink.into(), vlan: Some(100), mtu: 1500 },
            WantNet { network_id: n200.clone(), uplink: uplink.into(), vlan: Some(200), mtu: 1500 },
        ]
    };
    for (h, uplink) in [(&h1, "trunk1"), (&h2, "trunk2")] {
        let want = want_on(uplink);
        let p = reconcile::reconcile(&h.nl(), &want).await.unwrap();
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(reconcile::reconcile(&h.nl(), &want).await.unwrap(), Plan::default(), "idempotent");
    }
    // VMs: the same subnet on both VLANs, so only layer 2 can keep them apart.
    let vms: Vec<(TestNs, &TestNs, &str, &str)> = vec![
        (TestNs::new("a100"), &h1, n100.as_str(), "10.50.0.11"),
        (TestNs::new("b100"), &h2, n100.as_str(), "10.50.0.12"),
        (TestNs::new("a200"), &h1, n200.as_str(), "10.50.0.21"),
        (TestNs::new("b200"), &h2, n200.as_str(), "10.50.0.22"),
    ];
    for (i, (vm, host, net, ip)) in vms.iter().enumerate() {
        attach_vm(host, &bridge_name(net), vm, &format!("tapvm{i}"), Some(ip), None).await;
    }
    let [a100, b100, a200, b200] = [&vms[0].0, &vms[1].0, &vms[2].0, &vms[3].0];
    assert!(pings(a100, "10.50.0.12"), "VLAN 100 pings VLAN 100 across hosts");
    assert!(pings(b200, "10.50.0.21"), "VLAN 200 pings VLAN 200 across hosts");
    assert!(!pings(a200, "10.50.0.11"), "VLAN 200 must not ping VLAN 100");
    assert!(udp_reaches(a100, b100, "10.50.0.12"), "VLAN 100 reaches VLAN 100 across hosts");
    assert!(udp_reaches(a200, b200, "10.50.0.22"), "VLAN 200 reaches VLAN 200 across hosts");
    assert!(!udp_reaches(a200, a100, "10.50.0.11"), "VLAN 200 must not reach VLAN 100 on the same host");
    assert!(!udp_reaches(b200, a100, "10.50.0.11"), "VLAN 200 must not reach VLAN 100 across hosts");
    assert!(!udp_reaches(a100, b200, "10.50.0.22"), "VLAN 100 must not reach VLAN 200");

    // A broadcast on VLAN 200 is seen on VLAN 200 only.
    const MARK: &[u8] = b"cairn-vlan-200-broadcast";
    let watchers = [
        (capture(b200, "eth0", MARK, Duration::from_secs(2)), true, "VLAN 200 on the other host"),
        (capture(a100, "eth0", MARK, Duration::from_secs(2)), false, "VLAN 100 on the same host"),
        (capture(b100, "eth0", MARK, Duration::from_secs(2)), false, "VLAN 100 on the other host"),
    ];
    broadcast(a200, Ipv4Addr::new(10, 50, 0, 255), MARK);
    for (w, expected, who) in watchers {
        assert_eq!(w.join().unwrap(), expected, "broadcast seen by {who}");
    }

    // DHCP across the trunk: the server runs on h1, the VM sits on h2's VLAN 100 bridge.
    let dir = tempfile::tempdir().unwrap();
    let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
    let mac = Mac([0xfa, 0x16, 0x3e, 0x00, 0x01, 0x00]);
    let vm_port = state_with_port(&r, network(&n100, NetworkType::Vlan, Some(100)), "10.60.0.0/24", mac).await;
    let mut server = Dhcp::new(dnsmasq(), dir.path().join("dhcp"), None);
    let built = [n100.as_str()].into_iter().collect();
    server.sync(&h1.nl(), &r.store().view().unwrap(), &built).await.unwrap();
    let client = TestNs::new("c100");
    attach_vm(&h2, &bridge_name(&n100), &client, "tapdc", None, Some(mac.0)).await;
    assert_eq!(dhcp_client(&client), Some(ip_of(&vm_port)), "address from Cairn's dnsmasq over VLAN 100");
    let stray = TestNs::new("c200");
    attach_vm(&h2, &bridge_name(&n200), &stray, "tapds", None, Some(mac.0)).await;
    assert_eq!(dhcp_client(&stray), None, "no DHCP answer reaches VLAN 200");

    // Cleanup leaves nothing of Cairn's behind.
    server.teardown();
    assert_eq!(server.pid(&n100), None);
    assert!(!NetNs::exists(&dhcp::namespace(&n100)));
    for h in [&h1, &h2] {
        reconcile::reconcile(&h.nl(), &[]).await.unwrap();
        let left: Vec<String> = h
            .nl()
            .links()
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.alias.as_deref() == Some(OWNER_ALIAS))
            .map(|l| l.name)
            .collect();
        assert!(left.is_empty(), "{}: links left behind: {left:?}", h.name());
    }
    r.shutdown().await;
}

/// Whether a full kernel is required (in the guest): nothing may be skipped there.
fn full_kernel_required() -> bool {
    std::env::var_os("CAIRN_REQUIRE_VLAN").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_kinds_round_trip() {
    common::require_root("link_kinds_round_trip");
    use cairn_agent::sys::netlink::LinkKind;
    let ns = TestNs::new("kinds");
    let nl = ns.nl();
    nl.add_link("br0", NewLink::Bridge, Some(OWNER_ALIAS)).await.unwrap();
    nl.add_link("ve0", NewLink::Veth { peer: "ve1".into() }, Some(OWNER_ALIAS)).await.unwrap();
    nl.add_link("tap0", NewLink::Tap, Some(OWNER_ALIAS)).await.unwrap();
    assert!(matches!(nl.add_link("br0", NewLink::Bridge, None).await, Err(NetlinkError::Exists(_))));
    let dummy = nl.add_link("dum0", NewLink::Dummy, None).await;
    match &dummy {
        Ok(()) => {}
        Err(e) if !full_kernel_required() => {
            eprintln!("this kernel has no dummy links ({e}); the guest run covers them")
        }
        Err(e) => panic!("dummy link: {e}"),
    }
    let (br, ve0, tap) = (index(&nl, "br0").await, index(&nl, "ve0").await, index(&nl, "tap0").await);
    nl.set_mtu(ve0, 1400).await.unwrap();
    nl.set_mac(ve0, [0xfa, 0x16, 0x3e, 1, 2, 3]).await.unwrap();
    for i in [br, ve0, tap] {
        nl.set_up(i, true).await.unwrap();
    }
    nl.set_master(ve0, Some(br)).await.unwrap();
    nl.set_master(tap, Some(br)).await.unwrap();
    let links = nl.links().await.unwrap();
    let get = |n: &str| links.iter().find(|l| l.name == n).unwrap().clone();
    assert_eq!(get("br0").kind, LinkKind::Bridge);
    assert_eq!(get("ve0").kind, LinkKind::Veth);
    assert_eq!(get("tap0").kind, LinkKind::Tun);
    assert_eq!(get("ve0").mtu, 1400);
    assert_eq!(get("ve0").mac, Some([0xfa, 0x16, 0x3e, 1, 2, 3]));
    assert_eq!(get("ve0").master, Some(br));
    assert_eq!(get("tap0").master, Some(br));
    assert_eq!(get("tap0").alias.as_deref(), Some(OWNER_ALIAS));
    assert!(get("br0").up);
    if dummy.is_ok() {
        assert_eq!(get("dum0").kind, LinkKind::Dummy);
        assert_eq!(get("dum0").alias, None);
    }
    if kernel_has_vlans().await {
        nl.add_link("ve1.42", NewLink::Vlan { parent: index(&nl, "ve1").await, id: 42 }, None).await.unwrap();
        let v = nl.links().await.unwrap().into_iter().find(|l| l.name == "ve1.42").unwrap();
        assert_eq!(v.kind, LinkKind::Vlan { parent: index(&nl, "ve1").await, id: 42 });
    }
    nl.set_master(tap, None).await.unwrap();
    nl.set_up(br, false).await.unwrap();
    let links = nl.links().await.unwrap();
    assert_eq!(links.iter().find(|l| l.name == "tap0").unwrap().master, None);
    assert!(!links.iter().find(|l| l.name == "br0").unwrap().up);
    for n in ["tap0", "ve0", "br0"] {
        nl.delete_link(index(&nl, n).await).await.unwrap();
    }
    let left: Vec<String> = nl.links().await.unwrap().into_iter().map(|l| l.name).collect();
    assert!(!left.iter().any(|n| ["tap0", "ve0", "ve1", "br0"].contains(&n.as_str())), "{left:?}");
}
