//! What the agent needs from the kernel's links, addresses and routes, as a trait
//! ([`Netlink`]) with the real implementation over rtnetlink ([`RtNetlink`], in the agent's own
//! namespace or in a named one) and an in-memory fake ([`FakeNetlink`]) for the reconciler's
//! unit tests. No shelling out to `ip`.
//!
//! Limitations: routes are read and written in the main table only, unicast, one gateway
//! (no multipath); that is what an uplink's management configuration carries.

use super::netns::NetNs;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};

const RT_TABLE_MAIN: u8 = RouteHeader::RT_TABLE_MAIN;
use rtnetlink::{LinkBridge, LinkDummy, LinkUnspec, LinkVeth, LinkVlan, RouteMessageBuilder};
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};

/// Errors of kernel link operations.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("netlink {op} {what}")]
    Request {
        op: &'static str,
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("creating tap {name}")]
    Tap {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no link with index {0}")]
    NoSuchLink(u32),
    #[error("link {0:?} already exists")]
    Exists(String),
    #[error("{0}")]
    Namespace(#[from] super::netns::NetnsError),
    #[error("{0}")]
    Unsupported(String),
}

/// What kind of link it is, with the details the reconciler compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Vlan {
        parent: u32,
        id: u16,
    },
    Veth,
    Tun,
    Dummy,
    /// A physical NIC or anything else the kernel names (`"macvlan"`, `""` for a NIC).
    Other(String),
}

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    /// The bridge it is enslaved to.
    pub master: Option<u32>,
    pub up: bool,
    pub mtu: u32,
    /// `ip link set … alias`: Cairn marks the links it creates with [`crate::net::OWNER_ALIAS`].
    pub alias: Option<String>,
    pub mac: Option<[u8; 6]>,
}

/// An address on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

/// A unicast route of the main table through one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub metric: Option<u32>,
}

/// A link to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewLink {
    Bridge,
    Vlan {
        parent: u32,
        id: u16,
    },
    /// A veth pair; the peer gets `peer` as its name.
    Veth {
        peer: String,
    },
    Dummy,
    /// A persistent tap (TUNSETIFF + TUNSETPERSIST), as a VM's NIC would be.
    Tap,
}

type R<T> = Result<T, NetlinkError>;

/// The kernel operations the network reconciler and the DHCP supervisor use.
pub trait Netlink: Send + Sync {
    fn links(&self) -> impl Future<Output = R<Vec<Link>>> + Send;
    /// Creates a link, down, with `alias` set when given.
    fn add_link(&self, name: &str, kind: NewLink, alias: Option<&str>) -> impl Future<Output = R<()>> + Send;
    fn delete_link(&self, index: u32) -> impl Future<Output = R<()>> + Send;
    /// Enslaves the link to a bridge, or releases it (`None`).
    fn set_master(&self, index: u32, master: Option<u32>) -> impl Future<Output = R<()>> + Send;
    fn set_up(&self, index: u32, up: bool) -> impl Future<Output = R<()>> + Send;
    fn set_mtu(&self, index: u32, mtu: u32) -> impl Future<Output = R<()>> + Send;
    fn set_mac(&self, index: u32, mac: [u8; 6]) -> impl Future<Output = R<()>> + Send;
    /// Moves the link into another network namespace.
    fn set_netns(&self, index: u32, ns: &NetNs) -> impl Future<Output = R<()>> + Send;
    /// Addresses of global scope (link-local IPv6 addresses are the kernel's own and left out).
    fn addresses(&self, index: u32) -> impl Future<Output = R<Vec<IfAddr>>> + Send;
    fn add_address(&self, index: u32, addr: IfAddr) -> impl Future<Output = R<()>> + Send;
    fn del_address(&self, index: u32, addr: IfAddr) -> impl Future<Output = R<()>> + Send;
    /// Main-table unicast routes through the link, except those the kernel adds for addresses.
    fn routes(&self, index: u32) -> impl Future<Output = R<Vec<Route>>> + Send;
    fn add_route(&self, index: u32, route: Route) -> impl Future<Output = R<()>> + Send;
    fn del_route(&self, index: u32, route: Route) -> impl Future<Output = R<()>> + Send;
}

/// Whether an IPv6 address is link-local (fe80::/10).
pub fn is_link_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

// ---- the real kernel

/// rtnetlink over a socket in the agent's namespace or in a named one.
#[derive(Clone)]
pub struct RtNetlink {
    handle: rtnetlink::Handle,
    /// The namespace the socket lives in, when not the agent's own (taps are made there too).
    ns: Option<Arc<std::fs::File>>,
}

fn req(op: &'static str, what: impl std::fmt::Display) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.to_string();
    move |source| NetlinkError::Request { op, what, source }
}

impl RtNetlink {
    /// A connection in the calling process's namespace. Needs a tokio runtime.
    pub fn connect() -> R<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle, ns: None })
    }

    /// A connection whose socket lives in `ns` (opened from a thread inside it).
    pub fn connect_in(ns: &NetNs) -> R<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns
            .run(move || {
                let _guard = rt.enter();
                rtnetlink::new_connection()
            })?
            .map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        let file = ns.file().try_clone().map_err(NetlinkError::Connect)?;
        Ok(Self { handle, ns: Some(Arc::new(file)) })
    }

    async fn set(&self, msg: LinkMessage, op: &'static str, index: u32) -> R<()> {
        self.handle.link().set(msg).execute().await.map_err(req(op, format!("link {index}")))
    }

    async fn index_of(&self, name: &str) -> R<u32> {
        let mut s = self.handle.link().get().match_name(name.to_owned()).execute();
        match s.try_next().await.map_err(req("get", name))? {
            Some(m) => Ok(m.header.index),
            None => Err(NetlinkError::Unsupported(format!("link {name} vanished after creation"))),
        }
    }

    fn route_message(index: u32, r: &Route) -> RouteMessage {
        let mut m = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.dst, r.prefix)
            .map(|b| b.output_interface(index))
            .map(|b| match r.metric {
                Some(p) => b.priority(p),
                None => b,
            })
            .map(|b| b.build())
            .unwrap_or_default();
        if let Some(gw) = r.gateway {
            m.attributes.push(RouteAttribute::Gateway(match gw {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
        }
        m
    }
}

fn parse_link(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: LinkKind::Other(String::new()),
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        alias: None,
        mac: None,
    };
    let mut parent = 0;
    let mut vid = None;
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Controller(c) => l.master = Some(c),
            LinkAttribute::Mtu(v) => l.mtu = v,
            LinkAttribute::IfAlias(s) if !s.is_empty() => l.alias = Some(s),
            LinkAttribute::Link(p) => parent = p,
            LinkAttribute::Address(a) => l.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => {
                            l.kind = match k {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Veth => LinkKind::Veth,
                                InfoKind::Tun => LinkKind::Tun,
                                InfoKind::Dummy => LinkKind::Dummy,
                                InfoKind::Vlan => LinkKind::Vlan { parent: 0, id: 0 },
                                other => LinkKind::Other(other.to_string()),
                            }
                        }
                        LinkInfo::Data(InfoData::Vlan(vs)) => {
                            vid = vs.iter().find_map(|v| if let InfoVlan::Id(id) = v { Some(*id) } else { None })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let LinkKind::Vlan { .. } = l.kind {
        l.kind = LinkKind::Vlan { parent, id: vid.unwrap_or(0) };
    }
    l
}

fn parse_addr(m: &AddressMessage) -> Option<IfAddr> {
    let ip = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = ip.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(IfAddr { ip, prefix: m.header.prefix_len })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn parse_route(m: &RouteMessage, index: u32, v6: bool) -> Option<Route> {
    let table = m
        .attributes
        .iter()
        .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
        .unwrap_or(u32::from(m.header.table));
    if table != u32::from(RT_TABLE_MAIN)
        || m.header.kind != RouteType::Unicast
        || m.header.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let mut oif = None;
    let mut r = Route {
        dst: if v6 { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) },
        prefix: m.header.destination_prefix_length,
        gateway: None,
        metric: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(d) => r.dst = route_ip(d)?,
            RouteAttribute::Gateway(g) => r.gateway = route_ip(g),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            _ => {}
        }
    }
    (oif == Some(index) && !is_link_local(&r.dst)).then_some(r)
}

impl Netlink for RtNetlink {
    async fn links(&self) -> R<Vec<Link>> {
        let msgs: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(req("dump", "links"))?;
        Ok(msgs.into_iter().map(parse_link).collect())
    }

    async fn add_link(&self, name: &str, kind: NewLink, alias: Option<&str>) -> R<()> {
        let msg = match kind {
            NewLink::Bridge => LinkBridge::new(name).build(),
            NewLink::Vlan { parent, id } => LinkVlan::new(name, parent, id).build(),
            NewLink::Veth { peer } => LinkVeth::new(name, &peer).build(),
            NewLink::Dummy => LinkDummy::new(name).build(),
            NewLink::Tap => {
                let (n, ns) = (name.to_owned(), self.ns.clone());
                // A thread of its own, so entering the namespace touches no shared worker.
                let made = tokio::task::spawn_blocking(move || {
                    std::thread::spawn(move || {
                        if let Some(f) = ns {
                            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                                .map_err(|e| NetlinkError::Tap { name: n.clone(), source: e.into() })?;
                        }
                        make_tap(&n)
                    })
                    .join()
                })
                .await;
                match made {
                    Ok(Ok(r)) => r?,
                    _ => {
                        return Err(NetlinkError::Tap {
                            name: name.into(),
                            source: std::io::Error::other("thread failed"),
                        })
                    }
                }
                return self.set_alias(name, alias).await;
            }
        };
        self.handle.link().add(msg).execute().await.map_err(|source| match &source {
            rtnetlink::Error::NetlinkError(e) if e.raw_code() == -libc::EEXIST => NetlinkError::Exists(name.into()),
            _ => NetlinkError::Request { op: "create", what: name.into(), source },
        })?;
        self.set_alias(name, alias).await
    }

    async fn delete_link(&self, index: u32) -> R<()> {
        self.handle.link().del(index).execute().await.map_err(req("delete", format!("link {index}")))
    }

    async fn set_master(&self, index: u32, master: Option<u32>) -> R<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = match master {
            Some(m) => b.controller(m).build(),
            None => b.nocontroller().build(),
        };
        self.set(msg, "set master of", index).await
    }

    async fn set_up(&self, index: u32, up: bool) -> R<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up().build() } else { b.down().build() };
        self.set(msg, "set state of", index).await
    }

    async fn set_mtu(&self, index: u32, mtu: u32) -> R<()> {
        self.set(LinkUnspec::new_with_index(index).mtu(mtu).build(), "set mtu of", index).await
    }

    async fn set_mac(&self, index: u32, mac: [u8; 6]) -> R<()> {
        self.set(LinkUnspec::new_with_index(index).address(mac.to_vec()).build(), "set address of", index).await
    }

    async fn set_netns(&self, index: u32, ns: &NetNs) -> R<()> {
        let msg = LinkUnspec::new_with_index(index).setns_by_fd(ns.file().as_raw_fd()).build();
        self.set(msg, "move to namespace", index).await
    }

    async fn addresses(&self, index: u32) -> R<Vec<IfAddr>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(req("dump addresses of", format!("link {index}")))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(parse_addr)
            .filter(|a| !is_link_local(&a.ip))
            .collect())
    }

    async fn add_address(&self, index: u32, a: IfAddr) -> R<()> {
        self.handle
            .address()
            .add(index, a.ip, a.prefix)
            .execute()
            .await
            .map_err(req("add address", format!("{}/{} to link {index}", a.ip, a.prefix)))
    }

    async fn del_address(&self, index: u32, a: IfAddr) -> R<()> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(req("dump addresses of", format!("link {index}")))?;
        for m in msgs {
            if m.header.index == index && parse_addr(&m) == Some(a) {
                return self
                    .handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(req("delete address", format!("{}/{}", a.ip, a.prefix)));
            }
        }
        Ok(())
    }

    async fn routes(&self, index: u32) -> R<Vec<Route>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let query = if v6 {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
            };
            let msgs: Vec<RouteMessage> =
                self.handle.route().get(query).execute().try_collect().await.map_err(req("dump", "routes"))?;
            out.extend(msgs.iter().filter_map(|m| parse_route(m, index, v6)));
        }
        Ok(out)
    }

    async fn add_route(&self, index: u32, r: Route) -> R<()> {
        self.handle
            .route()
            .add(Self::route_message(index, &r))
            .execute()
            .await
            .map_err(req("add route", format!("{}/{} via {:?}", r.dst, r.prefix, r.gateway)))
    }

    async fn del_route(&self, index: u32, r: Route) -> R<()> {
        self.handle
            .route()
            .del(Self::route_message(index, &r))
            .execute()
            .await
            .map_err(req("delete route", format!("{}/{}", r.dst, r.prefix)))
    }
}

impl RtNetlink {
    async fn set_alias(&self, name: &str, alias: Option<&str>) -> R<()> {
        let Some(alias) = alias else { return Ok(()) };
        let index = self.index_of(name).await?;
        self.set(LinkUnspec::new_with_index(index).alias(alias).build(), "set alias of", index).await
    }
}

/// Creates a persistent tap: the kernel keeps it after the descriptor closes.
fn make_tap(name: &str) -> R<()> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    let err = |source| NetlinkError::Tap { name: name.into(), source };
    if name.len() >= libc::IFNAMSIZ {
        return Err(err(std::io::Error::other("name too long")));
    }
    let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(err)?;
    // struct ifreq: the name, then ifr_flags (short) in the union.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: `ifr` is a valid, writable ifreq-sized buffer for the duration of the call, and
    // TUNSETPERSIST takes an integer argument.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) };
    if rc < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: as above; the argument is a plain integer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) };
    if rc < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

// ---- the fake

/// An in-memory kernel: links, addresses and routes, with the same rules the real one enforces
/// where the reconciler depends on them (unique names, deleting a link frees its slaves and its
/// VLAN children, addresses and routes go with their link).
#[derive(Clone, Default)]
pub struct FakeNetlink {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    links: Vec<Link>,
    addrs: Vec<(u32, IfAddr)>,
    routes: Vec<(u32, Route)>,
    next: u32,
    /// Every mutating call, for tests that check a second run does nothing.
    calls: Vec<String>,
}

impl FakeNetlink {
    /// Adds a link as if someone else had made it (a NIC, an operator's bridge).
    pub fn with_link(&self, name: &str, kind: LinkKind, alias: Option<&str>) -> u32 {
        let mut s = self.lock();
        s.next += 1;
        let index = s.next;
        s.links.push(Link {
            index,
            name: name.into(),
            kind,
            master: None,
            up: true,
            mtu: 1500,
            alias: alias.map(str::to_owned),
            mac: None,
        });
        index
    }

    pub fn with_address(&self, index: u32, a: IfAddr) {
        self.lock().addrs.push((index, a));
    }

    pub fn with_route(&self, index: u32, r: Route) {
        self.lock().routes.push((index, r));
    }

    /// Mutating calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    pub fn link(&self, name: &str) -> Option<Link> {
        self.lock().links.iter().find(|l| l.name == name).cloned()
    }

    pub fn addrs_of(&self, index: u32) -> Vec<IfAddr> {
        self.lock().addrs.iter().filter(|(i, _)| *i == index).map(|(_, a)| *a).collect()
    }

    pub fn routes_of(&self, index: u32) -> Vec<Route> {
        self.lock().routes.iter().filter(|(i, _)| *i == index).map(|(_, r)| *r).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `call` and changes one link.
    fn edit(&self, call: String, index: u32, f: impl FnOnce(&mut Link)) -> R<()> {
        self.with(call, |s| {
            f(s.get(index)?);
            Ok(())
        })
    }

    fn with<T>(&self, call: String, f: impl FnOnce(&mut FakeState) -> R<T>) -> R<T> {
        let mut s = self.lock();
        s.calls.push(call);
        f(&mut s)
    }
}

impl FakeState {
    fn get(&mut self, index: u32) -> R<&mut Link> {
        self.links.iter_mut().find(|l| l.index == index).ok_or(NetlinkError::NoSuchLink(index))
    }
}

impl Netlink for FakeNetlink {
    async fn links(&self) -> R<Vec<Link>> {
        Ok(self.lock().links.clone())
    }

    async fn add_link(&self, name: &str, kind: NewLink, alias: Option<&str>) -> R<()> {
        self.with(format!("add {name}"), |s| {
            let mut names = vec![name.to_owned()];
            if let NewLink::Veth { peer } = &kind {
                names.push(peer.clone());
            }
            if s.links.iter().any(|l| names.contains(&l.name)) {
                return Err(NetlinkError::Exists(name.into()));
            }
            let kinds = match &kind {
                NewLink::Bridge => vec![LinkKind::Bridge],
                NewLink::Vlan { parent, id } => {
                    s.get(*parent)?;
                    vec![LinkKind::Vlan { parent: *parent, id: *id }]
                }
                NewLink::Veth { .. } => vec![LinkKind::Veth, LinkKind::Veth],
                NewLink::Dummy => vec![LinkKind::Dummy],
                NewLink::Tap => vec![LinkKind::Tun],
            };
            let mtu = match &kind {
                NewLink::Vlan { parent, .. } => s.get(*parent)?.mtu,
                _ => 1500,
            };
            for (n, k) in names.into_iter().zip(kinds) {
                s.next += 1;
                let index = s.next;
                s.links.push(Link {
                    index,
                    name: n,
                    kind: k,
                    master: None,
                    up: false,
                    mtu,
                    alias: alias.map(str::to_owned),
                    mac: None,
                });
            }
            Ok(())
        })
    }

    async fn delete_link(&self, index: u32) -> R<()> {
        self.with(format!("delete {index}"), |s| {
            s.get(index)?;
            let gone: Vec<u32> = s
                .links
                .iter()
                .filter(|l| l.index == index || matches!(l.kind, LinkKind::Vlan { parent, .. } if parent == index))
                .map(|l| l.index)
                .collect();
            s.links.retain(|l| !gone.contains(&l.index));
            for l in &mut s.links {
                if l.master.is_some_and(|m| gone.contains(&m)) {
                    l.master = None;
                }
            }
            s.addrs.retain(|(i, _)| !gone.contains(i));
            s.routes.retain(|(i, _)| !gone.contains(i));
            Ok(())
        })
    }

    async fn set_master(&self, index: u32, master: Option<u32>) -> R<()> {
        self.with(format!("master {index} {master:?}"), |s| {
            if let Some(m) = master {
                if s.get(m)?.kind != LinkKind::Bridge {
                    return Err(NetlinkError::Unsupported(format!("link {m} is not a bridge")));
                }
            }
            s.get(index)?.master = master;
            Ok(())
        })
    }

    async fn set_up(&self, index: u32, up: bool) -> R<()> {
        self.edit(format!("up {index} {up}"), index, |l| l.up = up)
    }

    async fn set_mtu(&self, index: u32, mtu: u32) -> R<()> {
        self.edit(format!("mtu {index} {mtu}"), index, |l| l.mtu = mtu)
    }

    async fn set_mac(&self, index: u32, mac: [u8; 6]) -> R<()> {
        self.edit(format!("mac {index}"), index, |l| l.mac = Some(mac))
    }

    async fn set_netns(&self, index: u32, _ns: &NetNs) -> R<()> {
        self.with(format!("netns {index}"), |s| {
            s.get(index)?;
            s.links.retain(|l| l.index != index);
            Ok(())
        })
    }

    async fn addresses(&self, index: u32) -> R<Vec<IfAddr>> {
        Ok(self.addrs_of(index))
    }

    async fn add_address(&self, index: u32, a: IfAddr) -> R<()> {
        self.with(format!("addr+ {index} {}/{}", a.ip, a.prefix), |s| {
            s.get(index)?;
            if !s.addrs.contains(&(index, a)) {
                s.addrs.push((index, a));
            }
            Ok(())
        })
    }

    async fn del_address(&self, index: u32, a: IfAddr) -> R<()> {
        self.with(format!("addr- {index} {}/{}", a.ip, a.prefix), |s| {
            s.addrs.retain(|x| *x != (index, a));
            Ok(())
        })
    }

    async fn routes(&self, index: u32) -> R<Vec<Route>> {
        Ok(self.routes_of(index))
    }

    async fn add_route(&self, index: u32, r: Route) -> R<()> {
        self.with(format!("route+ {index} {}/{}", r.dst, r.prefix), |s| {
            s.get(index)?;
            s.routes.push((index, r));
            Ok(())
        })
    }

    async fn del_route(&self, index: u32, r: Route) -> R<()> {
        self.with(format!("route- {index} {}/{}", r.dst, r.prefix), |s| {
            s.routes.retain(|x| *x != (index, r));
            Ok(())
        })
    }
}
