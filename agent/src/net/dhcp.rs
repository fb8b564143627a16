//! DHCP for networks: one dnsmasq per network with a DHCP-enabled subnet, owned by the agent.
//! Each runs in its own network namespace `cairn-dhcp-<network id>` (so tenant subnets never
//! touch the node's routing table and may overlap), reached through a veth pair: `tap<11 of
//! the DHCP port id>` on the network's bridge, `ns-<11>` inside with the DHCP port's MAC and
//! addresses. dnsmasq answers only for known ports (static ranges, a hosts file of MAC → IP),
//! serves no DNS (`--port=0`; subnets' `dns_nameservers` are handed out), is sent SIGHUP when
//! ports change, restarted when its subnets change, and restarted if it dies.
//!
//! Limitations: an agent restart restarts the dnsmasq processes (a lease renewal may be
//! refused for a second); IPv6 is stateful DHCPv6 only (no router advertisements).

use super::reconcile::{bridge_name, OWNER_ALIAS};
use crate::model::network::{Port, Subnet, DHCP_OWNER};
use crate::state::{StateError, View};
use crate::sys::netlink::{IfAddr, Netlink, NetlinkError, NewLink, RtNetlink};
use crate::sys::netns::{self, NetNs, NetnsError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Prefix of the namespaces this module owns.
pub const NS_PREFIX: &str = "cairn-dhcp-";
/// Lease time handed out.
const LEASE_SECS: u32 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("state")]
    State(#[from] StateError),
    #[error("namespace")]
    Netns(#[from] NetnsError),
    #[error("links")]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Io(#[from] crate::PathIo),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DhcpError + 'a {
    move |source| DhcpError::Io(crate::PathIo { op, path: path.into(), source })
}

/// The namespace of a network's DHCP server.
pub fn namespace(network_id: &str) -> String {
    format!("{NS_PREFIX}{network_id}")
}

fn short(id: &str) -> String {
    id.chars().take(11).collect()
}

/// What one network's dnsmasq serves.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Served {
    port: Port,
    subnets: Vec<Subnet>,
    /// Ports with addresses on those subnets (the hosts file).
    hosts: Vec<Port>,
    mtu: u32,
}

impl Served {
    /// dnsmasq's arguments; a change restarts it.
    fn args(&self, dir: &Path, iface: &str, user: Option<&str>) -> Vec<String> {
        let mut a = vec![
            "--keep-in-foreground".into(),
            "--conf-file=".into(),
            "--no-hosts".into(),
            "--no-resolv".into(),
            "--port=0".into(),
            "--bind-interfaces".into(),
            format!("--interface={iface}"),
            "--except-interface=lo".into(),
            "--dhcp-authoritative".into(),
            "--log-facility=-".into(),
            format!("--pid-file={}", dir.join("pid").display()),
            format!("--dhcp-leasefile={}", dir.join("leases").display()),
            format!("--dhcp-hostsfile={}", dir.join("host").display()),
            format!("--dhcp-optsfile={}", dir.join("opts").display()),
        ];
        if let Some(u) = user {
            a.push(format!("--user={u}"));
        }
        for (i, s) in self.subnets.iter().enumerate() {
            let range = if s.cidr.is_v6() {
                format!("--dhcp-range=set:subnet{i},{},static,{},{LEASE_SECS}s", s.cidr.addr(), s.cidr.prefix())
            } else {
                let mask = std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(s.cidr.prefix())).unwrap_or(0));
                format!("--dhcp-range=set:subnet{i},{},static,{mask},{LEASE_SECS}s", s.cidr.addr())
            };
            a.push(range);
        }
        a
    }

    /// The hosts file: `mac,host-name,ip` for every address on a served subnet.
    fn hosts_file(&self) -> String {
        let mut out = String::new();
        for p in &self.hosts {
            for f in p.fixed_ips.iter().filter(|f| self.subnets.iter().any(|s| s.id == f.subnet_id)) {
                let name = format!("host-{}", f.ip_address.to_string().replace(['.', ':'], "-"));
                let ip = if f.ip_address.is_ipv6() { format!("[{}]", f.ip_address) } else { f.ip_address.to_string() };
                let _ = writeln!(out, "{},{name},{ip}", p.mac_address);
            }
        }
        out
    }

    /// The options file: router, DNS servers and MTU per subnet.
    fn opts_file(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.subnets.iter().enumerate() {
            if s.cidr.is_v6() {
                if !s.dns_nameservers.is_empty() {
                    let d: Vec<String> = s.dns_nameservers.iter().map(|d| format!("[{d}]")).collect();
                    let _ = writeln!(out, "tag:subnet{i},option6:dns-server,{}", d.join(","));
                }
                continue;
            }
            match s.gateway_ip {
                Some(g) => {
                    let _ = writeln!(out, "tag:subnet{i},option:router,{g}");
                }
                None => {
                    let _ = writeln!(out, "tag:subnet{i},option:router");
                }
            }
            if !s.dns_nameservers.is_empty() {
                let d: Vec<String> = s.dns_nameservers.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(out, "tag:subnet{i},option:dns-server,{}", d.join(","));
            }
            let _ = writeln!(out, "tag:subnet{i},option:mtu,{}", self.mtu);
            // Host routes as classless static routes (RFC 3442); a client that takes them
            // ignores the router option, so the default route goes with them, as Neutron does.
            if !s.host_routes.is_empty() {
                let mut routes: Vec<String> =
                    s.host_routes.iter().map(|r| format!("{},{}", r.destination, r.nexthop)).collect();
                if let Some(g) = s.gateway_ip {
                    routes.push(format!("0.0.0.0/0,{g}"));
                }
                let _ = writeln!(out, "tag:subnet{i},option:classless-static-route,{}", routes.join(","));
            }
        }
        out
    }
}

/// A running dnsmasq.
struct Server {
    child: Child,
    args: Vec<String>,
}

/// The DHCP servers of this node.
pub struct Dhcp {
    dnsmasq: PathBuf,
    run_dir: PathBuf,
    /// `--user` for dnsmasq (it drops privileges after binding); `None` keeps its default.
    user: Option<String>,
    servers: BTreeMap<String, Server>,
    /// Cleared leftovers of an earlier run once.
    started: bool,
}

impl Dhcp {
    pub fn new(dnsmasq: PathBuf, run_dir: PathBuf, user: Option<String>) -> Self {
        Self { dnsmasq, run_dir, user, servers: BTreeMap::new(), started: false }
    }

    /// Finds dnsmasq on the usual paths.
    pub fn find_dnsmasq() -> Option<PathBuf> {
        ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq", "/usr/local/sbin/dnsmasq"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }

    fn dir(&self, network_id: &str) -> PathBuf {
        self.run_dir.join(network_id)
    }

    /// What every network carried here (`built`) needs served.
    fn desired(view: &View, built: &BTreeSet<&str>) -> Result<BTreeMap<String, Served>, StateError> {
        let nets: BTreeMap<String, u32> = view
            .networks()?
            .into_iter()
            .filter(|n| built.contains(n.id.as_str()) && n.admin_state_up)
            .map(|n| (n.id, n.mtu))
            .collect();
        let mut subnets: BTreeMap<String, Vec<Subnet>> = BTreeMap::new();
        for s in view.subnets()?.into_iter().filter(|s| s.enable_dhcp && nets.contains_key(&s.network_id)) {
            subnets.entry(s.network_id.clone()).or_default().push(s);
        }
        let ports = view.ports()?;
        let mut out = BTreeMap::new();
        for (net, mut subs) in subnets {
            let Some(port) = ports.iter().find(|p| p.network_id == net && p.device_owner == DHCP_OWNER) else {
                continue;
            };
            subs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            let mut hosts: Vec<Port> = ports
                .iter()
                .filter(|p| p.network_id == net && p.device_owner != DHCP_OWNER && p.admin_state_up)
                .cloned()
                .collect();
            hosts.sort_by(|a, b| a.id.cmp(&b.id));
            out.insert(net.clone(), Served { port: port.clone(), subnets: subs, hosts, mtu: nets[&net] });
        }
        Ok(out)
    }

    /// Brings the servers in line with the state.
    pub async fn sync<N: Netlink>(&mut self, nl: &N, view: &View, built: &BTreeSet<&str>) -> Result<(), DhcpError> {
        let want = Self::desired(view, built)?;
        if !self.started {
            self.started = true;
            self.clear_leftovers();
        }
        // Gone: stop, remove namespace and files.
        let gone: Vec<String> = self.servers.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        for net in gone {
            self.stop(&net);
        }
        for ns in netns::list().into_iter().filter(|n| n.starts_with(NS_PREFIX)) {
            let net = &ns[NS_PREFIX.len()..];
            if !want.contains_key(net) {
                self.stop(net);
            }
        }
        for (net, served) in &want {
            if let Err(e) = self.serve(nl, net, served).await {
                log::error!("DHCP for network {net}: {}", crate::error_chain(&e));
            }
        }
        Ok(())
    }

    /// Kills dnsmasq processes a previous agent left (by their pid files).
    fn clear_leftovers(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.run_dir) else { return };
        for d in dirs.flatten() {
            if let Some(pid) =
                std::fs::read_to_string(d.path().join("pid")).ok().and_then(|s| s.trim().parse::<i32>().ok())
            {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                if exe.is_some_and(|e| e.file_name() == self.dnsmasq.file_name()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                }
            }
        }
    }

    /// Restarts servers that died; called often.
    pub fn reap(&mut self) {
        let dead: Vec<String> = self
            .servers
            .iter_mut()
            .filter_map(|(net, s)| match s.child.try_wait() {
                Ok(Some(status)) => {
                    log::warn!("dnsmasq for network {net} exited ({status}); restarting");
                    Some(net.clone())
                }
                _ => None,
            })
            .collect();
        for net in dead {
            if let Some(s) = self.servers.remove(&net) {
                match self.spawn(&net, &s.args) {
                    Ok(child) => {
                        self.servers.insert(net, Server { child, args: s.args });
                    }
                    Err(e) => log::error!("restarting dnsmasq for network {net}: {}", crate::error_chain(&e)),
                }
            }
        }
    }

    /// Network id → pid of every running server.
    pub fn pids(&self) -> BTreeMap<String, u32> {
        self.servers.iter().map(|(n, s)| (n.clone(), s.child.id())).collect()
    }

    /// Whether a server runs for the network, and its pid.
    pub fn pid(&self, network_id: &str) -> Option<u32> {
        self.servers.get(network_id).map(|s| s.child.id())
    }

    async fn serve<N: Netlink>(&mut self, nl: &N, net: &str, served: &Served) -> Result<(), DhcpError> {
        let ns = NetNs::ensure(&namespace(net))?;
        let (tap, inner) = (format!("tap{}", short(&served.port.id)), format!("ns-{}", short(&served.port.id)));
        let inside = RtNetlink::connect_in(&ns)?;
        let in_links = inside.links().await?;
        if !in_links.iter().any(|l| l.name == inner) {
            plumb(nl, &ns, &tap, &inner, &bridge_name(net)).await?;
        }
        // Inside: lo and the DHCP port's interface up, with its MAC, MTU and addresses.
        let in_links = inside.links().await?;
        for l in &in_links {
            if l.name == "lo" && !l.up {
                inside.set_up(l.index, true).await?;
            }
        }
        let Some(dev) = in_links.iter().find(|l| l.name == inner) else {
            return Err(NetlinkError::Unsupported(format!("{inner} missing in {}", ns.name())).into());
        };
        if dev.mac != Some(served.port.mac_address.0) {
            inside.set_mac(dev.index, served.port.mac_address.0).await?;
        }
        if dev.mtu != served.mtu {
            inside.set_mtu(dev.index, served.mtu).await?;
        }
        let want_addrs: BTreeSet<IfAddr> = served
            .port
            .fixed_ips
            .iter()
            .filter_map(|f| {
                let s = served.subnets.iter().find(|s| s.id == f.subnet_id)?;
                Some(IfAddr { ip: f.ip_address, prefix: s.cidr.prefix() })
            })
            .collect();
        let have: BTreeSet<IfAddr> = inside.addresses(dev.index).await?.into_iter().collect();
        for a in have.difference(&want_addrs) {
            inside.del_address(dev.index, *a).await?;
        }
        for a in want_addrs.difference(&have) {
            inside.add_address(dev.index, *a).await?;
        }
        if !dev.up {
            inside.set_up(dev.index, true).await?;
        }
        // Files, then the process.
        let dir = self.dir(net);
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let hosts_changed = write_if_changed(&dir.join("host"), &served.hosts_file())?;
        let opts_changed = write_if_changed(&dir.join("opts"), &served.opts_file())?;
        let args = served.args(&dir, &inner, self.user.as_deref());
        match self.servers.get_mut(net) {
            Some(s) if s.args == args => {
                if hosts_changed || opts_changed {
                    let pid = nix::unistd::Pid::from_raw(s.child.id() as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
                    log::info!("DHCP for network {net}: reloaded ({} host(s))", served.hosts.len());
                }
            }
            _ => {
                if let Some(mut old) = self.servers.remove(net) {
                    stop_child(&mut old.child);
                }
                let child = self.spawn(net, &args)?;
                log::info!("DHCP for network {net}: dnsmasq {} in {}", child.id(), ns.name());
                self.servers.insert(net.into(), Server { child, args });
            }
        }
        Ok(())
    }

    fn spawn(&self, net: &str, args: &[String]) -> Result<Child, DhcpError> {
        let ns = NetNs::open(&namespace(net))?;
        let fd: RawFd = ns.file().as_raw_fd();
        let mut cmd = Command::new(&self.dnsmasq);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        // SAFETY: between fork and exec only async-signal-safe calls: setns(2) on a descriptor
        // the parent keeps open (`ns` lives until spawn returns).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io_err("starting", &self.dnsmasq))?;
        drop(ns);
        Ok(child)
    }

    fn stop(&mut self, net: &str) {
        if let Some(mut s) = self.servers.remove(net) {
            stop_child(&mut s.child);
            log::info!("DHCP for network {net}: stopped");
        }
        // The veth pair goes with the namespace (deleting one end deletes both).
        if let Err(e) = netns::delete(&namespace(net)) {
            log::warn!("DHCP for network {net}: {}", crate::error_chain(&e));
        }
        let dir = self.dir(net);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Stops every server (agent shutdown) and leaves namespaces for the next start.
    pub fn shutdown(&mut self) {
        for s in self.servers.values_mut() {
            stop_child(&mut s.child);
        }
        self.servers.clear();
    }

    /// Stops every server and removes every namespace and file (tests, decommissioning).
    pub fn teardown(&mut self) {
        let nets: Vec<String> = self.servers.keys().cloned().collect();
        for n in nets {
            self.stop(&n);
        }
        for ns in netns::list().into_iter().filter(|n| n.starts_with(NS_PREFIX)) {
            self.stop(&ns[NS_PREFIX.len()..]);
        }
    }
}

impl Drop for Dhcp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stop_child(c: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(c.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Makes the veth pair: `tap` on the bridge in the root namespace, `inner` inside `ns`.
async fn plumb<N: Netlink>(nl: &N, ns: &NetNs, tap: &str, inner: &str, bridge: &str) -> Result<(), DhcpError> {
    let links = nl.links().await?;
    if let Some(stale) = links.iter().find(|l| l.name == tap && l.alias.as_deref() == Some(OWNER_ALIAS)) {
        nl.delete_link(stale.index).await?;
    }
    nl.add_link(tap, NewLink::Veth { peer: inner.into() }, Some(OWNER_ALIAS)).await?;
    let links = nl.links().await?;
    let find = |n: &str| {
        links
            .iter()
            .find(|l| l.name == n)
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::Unsupported(format!("link {n} does not exist")))
    };
    let (t, i, b) = (find(tap)?, find(inner)?, find(bridge)?);
    nl.set_netns(i, ns).await?;
    nl.set_master(t, Some(b)).await?;
    nl.set_up(t, true).await?;
    Ok(())
}

/// Writes `text` to `path` (atomically) unless it already holds it; says whether it wrote.
fn write_if_changed(path: &Path, text: &str) -> Result<bool, DhcpError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming", path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{FixedIp, HostRoute, Mac};

    fn subnet(id: &str, cidr: &str, dns: &[&str]) -> Subnet {
        let mut s = Subnet::new(id, "n", "p", cidr.parse().unwrap(), 0);
        s.dns_nameservers = dns.iter().map(|d| d.parse().unwrap()).collect();
        s
    }

    fn port(id: &str, mac: u8, ips: &[(&str, &str)]) -> Port {
        let mut p = Port::new(id, "n", "p", Mac([0xfa, 0x16, 0x3e, 0, 0, mac]), 0);
        p.fixed_ips =
            ips.iter().map(|(s, ip)| FixedIp { subnet_id: (*s).into(), ip_address: ip.parse().unwrap() }).collect();
        p
    }

    #[test]
    fn dnsmasq_configuration() {
        let s = Served {
            port: port("dhcp", 1, &[("a", "10.0.0.2")]),
            subnets: vec![subnet("a", "10.0.0.0/24", &["192.0.2.53"]), subnet("b", "fd00::/64", &[])],
            hosts: vec![port("p1", 2, &[("a", "10.0.0.3"), ("b", "fd00::3")]), port("p2", 3, &[("z", "10.9.9.9")])],
            mtu: 1450,
        };
        assert_eq!(
            s.hosts_file(),
            "fa:16:3e:00:00:02,host-10-0-0-3,10.0.0.3\nfa:16:3e:00:00:02,host-fd00--3,[fd00::3]\n"
        );
        assert_eq!(
            s.opts_file(),
            "tag:subnet0,option:router,10.0.0.1\ntag:subnet0,option:dns-server,192.0.2.53\ntag:subnet0,option:mtu,1450\n"
        );
        let mut routed = s.subnets[0].clone();
        routed.host_routes =
            vec![HostRoute { destination: "10.20.0.0/24".parse().unwrap(), nexthop: "10.0.0.9".parse().unwrap() }];
        let with_routes = Served { subnets: vec![routed], ..s.clone() };
        assert!(with_routes
            .opts_file()
            .ends_with("tag:subnet0,option:classless-static-route,10.20.0.0/24,10.0.0.9,0.0.0.0/0,10.0.0.1\n"));
        let args = s.args(Path::new("/run/x"), "ns-abc", Some("nobody"));
        assert!(args.contains(&"--dhcp-range=set:subnet0,10.0.0.0,static,255.255.255.0,86400s".to_string()));
        assert!(args.contains(&"--dhcp-range=set:subnet1,fd00::,static,64,86400s".to_string()));
        assert!(args.contains(&"--interface=ns-abc".to_string()) && args.contains(&"--port=0".to_string()));
        assert_eq!(namespace("n1"), "cairn-dhcp-n1");
    }
}
