//! The composition root: builds the real `sys` implementations, probes and prepares the host,
//! opens the replicated state, bootstraps identity on first start, serves the API, tells
//! systemd it is ready and runs until SIGTERM or SIGINT.

use crate::api::{self, Api};
use crate::config::Config;
use crate::host::{self, setup, Accel};
use crate::identity::{token, Identity, IdentityError};
use crate::net::agent::{management_nic, NetAgent, StatusHandle};
use crate::net::dhcp::Dhcp;
use crate::net::service::{NetSettings, Networking};
use crate::pki::{self, Pki, PkiError};
use crate::state::raft::Replicated;
use crate::state::ClusterCommand;
use crate::state::{StateError, Store};
use crate::sys::netlink::RtNetlink;
use crate::sys::{hostfs::RootedFs, kvm::ChildKvmTester, modules::Modprobe, notify};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Io(#[from] crate::PathIo),
    #[error("PKI")]
    Pki(#[from] PkiError),
    #[error("state")]
    State(#[from] StateError),
    #[error("identity")]
    Identity(#[from] IdentityError),
    #[error("listening on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handler")]
    Signal(#[source] std::io::Error),
    #[error("joining the cluster")]
    Join(#[from] crate::cluster::join::JoinError),
    #[error("cluster")]
    Cluster(#[from] crate::cluster::ClusterError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io(crate::PathIo { op, path: path.into(), source })
}

/// The node's addresses, for its certificate.
fn local_addresses(cfg: &Config) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|i| i.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                })
                .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
                .collect()
        })
        .unwrap_or_default();
    for listen in [cfg.listen, cfg.peer_listen] {
        if !listen.ip().is_unspecified() {
            addrs.push(listen.ip());
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "cairn".into())
}

/// Loads the token signing key, creating it (0600) on first start.
fn token_key(dir: &Path) -> Result<[u8; token::KEY_LEN], DaemonError> {
    let path = dir.join("token.key");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == token::KEY_LEN => {
            let mut k = [0u8; token::KEY_LEN];
            k.copy_from_slice(&bytes);
            Ok(k)
        }
        Ok(_) => Err(DaemonError::Io(crate::PathIo {
            op: "reading",
            path,
            source: std::io::Error::other("token key has the wrong length"),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k: [u8; token::KEY_LEN] = rand::random();
            pki::write_file(&path, &k, true)?;
            Ok(k)
        }
        Err(source) => Err(DaemonError::Io(crate::PathIo { op: "reading", path, source })),
    }
}

/// The admin password for the first start: environment, config, or random (stored 0600 for
/// the operator; its path is logged, never the password). Says whether it was generated.
fn admin_password(cfg: &Config) -> Result<(String, bool), DaemonError> {
    if let Some(p) = std::env::var("CAIRN_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty()) {
        return Ok((p, false));
    }
    if let Some(p) = cfg.admin_password.clone() {
        return Ok((p, false));
    }
    let path = cfg.data_dir.join("admin-password");
    let p: String =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rand::random::<[u8; 18]>());
    pki::write_file(&path, p.as_bytes(), true)?;
    log::warn!("generated a random admin password: read it from {} (mode 0600)", path.display());
    Ok((p, true))
}

/// Writes the node's banner straight to the console (not the journal): the operator at the
/// console is the one who may see a first-boot password.
fn console_banner(url: &str, fingerprint: &str, data_dir: &Path, password: Option<&str>) {
    let file = data_dir.join("admin-password");
    let admin = match password {
        Some(p) => format!("admin / {p}   (shown once; also in {})", file.display()),
        None => format!("admin; password as configured, or in {}", file.display()),
    };
    let text = format!(
        "\r\n==== Cairn node ====\r\nAPI            {url}\r\nCA fingerprint sha256 {fingerprint}\r\nCA certificate {}\r\nAdmin          {admin}\r\n====================\r\n",
        data_dir.join("pki/ca.pem").display()
    );
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/console")
        .and_then(|mut c| std::io::Write::write_all(&mut c, text.as_bytes()));
    if let Err(e) = written {
        log::warn!("console banner: {e}");
    }
}

/// Who this node is in its cluster: as stored; else joined with the configured token; else the
/// first node of a new cluster. A node of one cluster refuses a token of another.
async fn establish(
    cfg: &Config,
    joiner: &crate::cluster::join::Joiner<'_>,
) -> Result<crate::cluster::join::NodeIdentity, DaemonError> {
    use crate::cluster::join::{join, JoinError, NodeIdentity};
    let existing = NodeIdentity::load(&cfg.data_dir)?;
    let has_state = cfg.data_dir.join("state.redb").exists();
    let Some(token) = cfg.join_token.as_deref().filter(|t| !t.is_empty()) else {
        return match existing {
            Some(id) => Ok(id),
            None => {
                let id = NodeIdentity { node_id: 1, seed: true, known: Default::default() };
                id.save(&cfg.data_dir)?;
                Ok(id)
            }
        };
    };
    let ours = std::fs::read_to_string(cfg.data_dir.join("pki/ca.pem")).ok().and_then(|p| pki::fingerprint(&p));
    if existing.is_some() || has_state {
        let node_id = existing.as_ref().map(|i| i.node_id).unwrap_or(1);
        let theirs = crate::model::cluster::JoinToken::decode(token.trim())
            .ok()
            .map(|t| crate::model::cluster::hex(&t.ca_fingerprint));
        if let (Some(id), true) = (existing, theirs.is_some() && theirs == ours) {
            log::info!("already node {node_id} of the cluster the join token names; the token is not used again");
            return Ok(id);
        }
        return Err(JoinError::AlreadyMember {
            node_id,
            fingerprint: ours.unwrap_or_default(),
            data_dir: cfg.data_dir.display().to_string(),
        }
        .into());
    }
    Ok(join(token, joiner, crate::identity::now()).await?)
}

/// The address peers and clients should use for a listener: itself, or for a wildcard the
/// node's first routable address.
fn advertise(listen: std::net::SocketAddr, addrs: &[IpAddr]) -> String {
    if listen.ip().is_unspecified() {
        std::net::SocketAddr::new(first_routable(addrs).unwrap_or(listen.ip()), listen.port()).to_string()
    } else {
        listen.to_string()
    }
}

/// Runs the agent until a termination signal.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    log::info!("cairn {} starting", env!("CARGO_PKG_VERSION"));
    let kvm_timeout = Duration::from_secs(cfg.kvm_test_timeout_secs);
    let nested = cfg.nested;
    // The probe (and its KVM run test) runs while PKI, state and identity start up.
    let probing = tokio::task::spawn_blocking(move || {
        let (fs, kvm) = (RootedFs::new("/"), ChildKvmTester { timeout: kvm_timeout });
        let facts = host::probe(&fs, &kvm);
        match setup::apply(&facts, nested, &Modprobe) {
            Ok(true) => host::probe(&fs, &kvm),
            Ok(false) => facts,
            Err(e) => {
                log::warn!("KVM module setup: {e}");
                facts
            }
        }
    });

    std::fs::create_dir_all(&cfg.data_dir).map_err(io_err("creating", &cfg.data_dir))?;
    // Others may pass through (QEMU, running as libvirt's user, opens instance disks and
    // images below) but not list; every secret inside is 0600.
    std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o711))
        .map_err(io_err("chmod", &cfg.data_dir))?;
    let data = host::data_dir(&cfg.data_dir);
    log::info!("state in {} ({} MiB free of {} MiB)", data.path, data.available_bytes >> 20, data.size_bytes >> 20);
    if data.in_memory {
        log::warn!(
            "STATE IS IN MEMORY ONLY: {} is on tmpfs (no local disk for data); everything this node stores is lost at power-off. Give it a disk or join it to a cluster.",
            cfg.data_dir.display()
        );
    }
    let host = cfg.node_name.clone().unwrap_or_else(hostname);
    let addrs = local_addresses(&cfg);
    let names = vec!["localhost".to_string(), host.clone()];
    let (api_addr, peer_addr) = (advertise(cfg.listen, &addrs), advertise(cfg.peer_listen, &addrs));
    let joiner = crate::cluster::join::Joiner {
        data_dir: &cfg.data_dir,
        name: &host,
        names: &names,
        addrs: &addrs,
        api_addr: api_addr.clone(),
        peer_addr: peer_addr.clone(),
    };
    let me = establish(&cfg, &joiner).await?;
    let pki = Arc::new(Pki::ensure(&cfg.data_dir.join("pki"), me.node_id, &host, &names, &addrs)?);
    let key = token_key(&cfg.data_dir)?;

    let db_path = cfg.data_dir.join("state.redb");
    let store = Store::open(&db_path)?;
    // It holds password hashes: owner only, like the keys.
    std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600)).map_err(io_err("chmod", &db_path))?;
    let peer_listener = tokio::net::TcpListener::bind(cfg.peer_listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: cfg.peer_listen, source })?;
    let peers = crate::cluster::peer::Peers::new(pki.peer_client_config()?);
    let prober = host::Prober { kvm_timeout, data_dir: cfg.data_dir.clone() };
    let state = Replicated::start_with(
        store,
        me.node_id,
        me.seed.then(|| peer_addr.clone()),
        crate::cluster::peer::PeerNetwork(peers.clone()),
        Some(Arc::new(peers.clone())),
    )
    .await?;
    let peer_service = Arc::new(crate::cluster::peer::PeerService {
        state: state.clone(),
        known: me.known.clone(),
        compute: std::sync::OnceLock::new(),
        prober: prober.clone(),
        images: std::sync::OnceLock::new(),
    });
    tokio::spawn(crate::cluster::peer::serve(peer_listener, pki.peer_server_config()?, peer_service.clone()));
    log::info!("node {} ({host}); peer port {peer_addr}", me.node_id);
    if !state.catch_up(Duration::from_secs(60)).await {
        log::warn!("no leader or log not applied after 60 s: the API answers from what this node has");
    }
    if me.seed {
        // The first node's key, so peers know it (joiners' keys come with their tokens).
        let key = pki.node_key().ok_or_else(|| {
            DaemonError::Io(crate::PathIo {
                op: "reading the node key of",
                path: cfg.data_dir.join("pki/node.pem"),
                source: std::io::Error::other("no public key in the node certificate"),
            })
        })?;
        if state.store().view()?.node_keys()?.get(&me.node_id) != Some(&key) {
            if let Err(r) = state
                .propose(crate::state::Command::Cluster(ClusterCommand::RegisterNodeKey { id: me.node_id, key }))
                .await?
            {
                return Err(DaemonError::Io(crate::PathIo {
                    op: "registering the node key of",
                    path: cfg.data_dir.join("pki/node.key"),
                    source: std::io::Error::other(r.to_string()),
                }));
            }
        }
    }
    let identity = Identity::new(state.clone(), &key, cfg.token_ttl_secs);
    let mut generated_password = None;
    if me.seed && !identity.view()?.is_bootstrapped()? {
        let (password, generated) = admin_password(&cfg)?;
        identity.bootstrap(password.clone()).await?;
        log::info!("bootstrapped: user admin, project admin, roles admin/member/reader");
        generated_password = generated.then_some(password);
    }

    let facts = probing.await.map_err(|e| {
        DaemonError::Io(crate::PathIo { op: "probing", path: "/".into(), source: std::io::Error::other(e) })
    })?;
    let accel = if facts.accel == Accel::Kvm { "kvm" } else { "qemu" };
    log::info!("guests will use domain type {accel}: {}", facts.accel_reason);

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: cfg.listen, source })?;
    let bound = listener.local_addr().map_err(|source| DaemonError::Listen { addr: cfg.listen, source })?;
    let net_status = StatusHandle::default();
    let (settings, net_agent) = network(&cfg, state.clone(), &host, net_status.clone()).await;
    let network = Arc::new(Networking::new(state.clone(), settings));
    let images_dir = cfg.data_dir.join("images");
    let images = crate::image::Images::new(state.clone(), images_dir.clone(), cfg.image.max_upload_bytes, host.clone())
        .map_err(io_err("creating", &images_dir))?;
    let images = Arc::new(images);
    let _ = peer_service.images.set(images.clone());
    let lv = libvirt().await;
    let storage = storage(&cfg, state.clone(), images_dir.clone(), &host, &lv).await;
    let inventory = inventory(&cfg, &facts, &data, &host, &addrs);
    let driver = match (&inventory, &lv) {
        (Some(_), Ok(lv)) => {
            Some(Arc::new(crate::compute::driver::Driver::new(lv.clone(), cfg.data_dir.join("instances"), accel)))
        }
        (Some(_), Err(why)) => {
            log::warn!("compute off (servers cannot be built here): {why}");
            None
        }
        (None, _) => None,
    };
    let compute = Arc::new(crate::compute::Compute::new(
        state.clone(),
        network.clone(),
        inventory,
        driver,
        images.clone(),
        storage.clone(),
        crate::model::compute::ComputeQuota {
            instances: cfg.compute.quota_instances,
            cores: cfg.compute.quota_cores,
            ram_mb: cfg.compute.quota_ram_mb,
        },
    ));
    tokio::spawn(compute.clone().reconcile_loop());
    if me.seed {
        compute.seed().await.map_err(|e| {
            DaemonError::Io(crate::PathIo {
                op: "seeding flavors",
                path: db_path.clone(),
                source: std::io::Error::other(crate::error_chain(&e)),
            })
        })?;
    }
    tokio::spawn(compute.clone().heartbeat_loop());
    let fingerprint = pki.ca_fingerprint().unwrap_or_default();
    let cluster = Arc::new(crate::cluster::Cluster::new(state.clone(), pki.clone(), key.to_vec(), peers, prober)?);
    compute.set_remote(cluster.clone());
    images.set_fetch(cluster.clone());
    tokio::spawn(images.clone().prune_loop());
    let _ = peer_service.compute.set(compute.clone());
    tokio::spawn(cluster.clone().membership_loop());
    let member = crate::model::cluster::Member {
        id: me.node_id,
        name: host.clone(),
        api_addr,
        peer_addr,
        roles: cfg.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        cpu_model: facts.cpu.model.clone(),
        cpus: u32::try_from(facts.cpu.count).unwrap_or(u32::MAX),
        virtualization: serde_json::to_value(facts.cpu.virtualization)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        accel: accel.into(),
        memory_mb: facts.memory.total_bytes >> 20,
        heartbeat_at: 0,
    };
    tokio::spawn(cluster.clone().heartbeat_loop(member));
    let api = Arc::new(Api {
        state: state.clone(),
        cluster,
        identity,
        compute,
        network,
        images,
        storage,
        net_status,
        public_url: cfg.public_url.clone(),
        host: facts,
        data_dir: data,
    });
    let server = tokio::spawn(api::serve(listener, pki.server_config()?, api));

    log::info!("CA certificate {} (sha256 {fingerprint})", pki.ca_path().display());
    let url = match (&cfg.public_url, bound.ip().is_unspecified()) {
        (Some(u), _) => format!("{}/identity/v3", u.trim_end_matches('/')),
        (None, true) => format!("https://{}/identity/v3", banner_host(&addrs, bound.port())),
        (None, false) => format!("https://{bound}/identity/v3"),
    };
    log::info!("cairn: ready {url}");
    if cfg.console_banner {
        console_banner(&url, &fingerprint, &cfg.data_dir, generated_password.as_deref());
    }
    if let Err(e) = notify::notify("READY=1") {
        log::warn!("sd_notify: {e}");
    }

    wait_for_signal().await?;
    log::info!("stopping");
    let _ = notify::notify("STOPPING=1");
    server.abort();
    if let Some(t) = net_agent {
        // Dropping the agent stops its dnsmasq processes.
        t.abort();
        let _ = t.await;
    }
    state.shutdown().await;
    Ok(())
}

/// The volume service: libvirt on `qemu:///system` (root only) and this node's pools, defined,
/// built and started when missing. Without libvirt the API answers 503 for volume work.
/// One connection to libvirt (`qemu:///system`, root only), shared by storage and compute.
async fn libvirt() -> Result<Arc<dyn crate::sys::libvirt::Libvirt>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root (qemu:///system)".into());
    }
    match tokio::task::spawn_blocking(|| crate::sys::libvirt::Virt::connect("qemu:///system")).await {
        Ok(Ok(v)) => Ok(Arc::new(v)),
        Ok(Err(e)) => Err(crate::error_chain(&e)),
        Err(e) => Err(e.to_string()),
    }
}

async fn storage(
    cfg: &Config,
    state: Replicated,
    images_dir: PathBuf,
    host: &str,
    libvirt: &Result<Arc<dyn crate::sys::libvirt::Libvirt>, String>,
) -> Arc<crate::storage::Storage> {
    use crate::model::storage::PoolSpec;
    use crate::storage::PoolConfig;
    let sc = &cfg.storage;
    let mut pools: Vec<PoolConfig> = if sc.pools.is_empty() {
        let path = cfg.data_dir.join("volumes").to_string_lossy().into_owned();
        vec![PoolConfig { name: "default".into(), spec: PoolSpec::Dir { path, format: None } }]
    } else {
        sc.pools.iter().map(|(name, spec)| PoolConfig { name: name.clone(), spec: spec.clone() }).collect()
    };
    if let Some(d) = &sc.default_pool {
        pools.sort_by_key(|p| p.name != *d);
    }
    let libvirt = if sc.enabled { libvirt.clone() } else { Err("storage.enabled is false".into()) };
    if let Err(why) = &libvirt {
        log::warn!("volume storage off: {why}");
    }
    let quota = crate::model::volume::Quota {
        volumes: sc.quota_volumes,
        gigabytes: sc.quota_gigabytes,
        snapshots: sc.quota_snapshots,
    };
    let st = Arc::new(crate::storage::Storage::new(state, libvirt, pools, images_dir, host.into(), quota));
    let ensuring = st.clone();
    let ensured = tokio::task::spawn_blocking(move || ensuring.ensure_pools()).await.unwrap_or_else(|e| {
        log::error!("storage pools: {e}");
        vec![]
    });
    for (name, r) in ensured {
        match r {
            Ok(i) if i.available < 1 << 30 => log::error!(
                "storage pool {name}: {} MiB free of {} GiB, not enough for even a 1 GiB volume: volumes created \
                 here will fail; give the pool (or the data disk) more room",
                i.available >> 20,
                i.capacity >> 30
            ),
            Ok(i) => log::info!("storage pool {name}: {} GiB free of {} GiB", i.available >> 30, i.capacity >> 30),
            Err(e) => log::error!("storage pool {name}: {}", crate::error_chain(&e)),
        }
    }
    tokio::spawn(st.clone().report_loop(std::time::Duration::from_secs(60)));
    st
}

/// This node's compute inventory, when it has the compute role: its CPUs, memory and data disk
/// as probed, the configured ratios and zone.
fn inventory(
    cfg: &Config,
    facts: &host::HostFacts,
    data: &host::DataDir,
    host: &str,
    addrs: &[std::net::IpAddr],
) -> Option<crate::model::compute::Inventory> {
    if !cfg.roles.contains(&crate::config::Role::Compute) {
        return None;
    }
    let c = &cfg.compute;
    let smallest = crate::model::compute::default_flavors().iter().map(|f| f.disk_gb).min().unwrap_or(1);
    if data.size_bytes >> 30 < smallest {
        log::error!(
            "compute: the data disk ({}) has {} MiB, less than the smallest flavor's {smallest} GiB: no server can \
             be placed on this node; give it a bigger disk",
            data.path,
            data.size_bytes >> 20
        );
    }
    let hundredths = |r: f64| (r * 100.0).round() as u32;
    Some(crate::model::compute::Inventory {
        node: host.into(),
        vcpus: u32::try_from(facts.cpu.count).unwrap_or(u32::MAX),
        memory_mb: facts.memory.total_bytes >> 20,
        disk_gb: data.size_bytes >> 30,
        ratios: crate::model::compute::Ratios {
            cpu: hundredths(c.cpu_allocation_ratio),
            ram: hundredths(c.ram_allocation_ratio),
            disk: hundredths(c.disk_allocation_ratio),
        },
        availability_zone: c.availability_zone.clone(),
        arch: std::env::consts::ARCH.into(),
        accel: if facts.accel == Accel::Kvm { "kvm" } else { "qemu" }.into(),
        enabled: true,
        heartbeat_at: 0,
        host_ip: addrs.first().map(|a| a.to_string()).unwrap_or_default(),
        booted_at: boot_time().unwrap_or(0),
    })
}

/// When the kernel booted (`btime` of /proc/stat), in Unix seconds.
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|t| t.trim().parse().ok())
}

/// Where runtime files of the DHCP servers go.
const DHCP_RUN_DIR: &str = "/run/cairn/dhcp";

/// The network service's settings and, on a node with a network or compute role, the host
/// network agent (needs root; without it the API still serves).
async fn network(
    cfg: &Config,
    state: Replicated,
    host: &str,
    status: StatusHandle,
) -> (NetSettings, Option<tokio::task::JoinHandle<()>>) {
    let off = |why: String| {
        status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).off = Some(why);
    };
    let mut physnets = cfg.network.physical_networks.clone();
    let nc = &cfg.network;
    let want_agent = !cfg.roles.is_empty();
    let nl = if want_agent && nix::unistd::geteuid().is_root() {
        match RtNetlink::connect() {
            Ok(nl) => Some(nl),
            Err(e) => {
                log::error!("network agent off: {}", crate::error_chain(&e));
                off(format!("netlink: {}", crate::error_chain(&e)));
                None
            }
        }
    } else {
        if want_agent {
            log::warn!("network agent off: not running as root (bridges, VLANs and DHCP need it)");
            off("not running as root".into());
        } else {
            off("this node has no network or compute role".into());
        }
        None
    };
    if physnets.is_empty() {
        let nic = match &nl {
            Some(nl) => management_nic(nl).await.unwrap_or_else(|e| {
                log::warn!("finding the management NIC: {}", crate::error_chain(&e));
                None
            }),
            None => None,
        };
        match nic {
            Some(n) => {
                log::info!("physical network {} is the management NIC {n}", nc.default_physical_network);
                physnets.insert(nc.default_physical_network.clone(), n);
            }
            None if nl.is_some() => {
                log::warn!("no management NIC found: networks on {} are not built here", nc.default_physical_network)
            }
            None => {}
        }
    }
    let mut known: std::collections::BTreeSet<String> = physnets.keys().cloned().collect();
    known.insert(nc.default_physical_network.clone());
    let settings = NetSettings {
        physical_networks: known,
        default_physical_network: nc.default_physical_network.clone(),
        tenant_vlan_range: (nc.tenant_vlan_range[0], nc.tenant_vlan_range[1]),
        host: host.into(),
    };
    let Some(nl) = nl else { return (settings, None) };
    let dhcp = if cfg.roles.contains(&crate::config::Role::Network) {
        match Dhcp::find_dnsmasq() {
            Some(path) => Some(Dhcp::new(path, DHCP_RUN_DIR.into(), Some("nobody".into()))),
            None => {
                log::warn!("dnsmasq not found: no DHCP on this node");
                None
            }
        }
    } else {
        None
    };
    let agent = NetAgent {
        nl,
        store: state.store().clone(),
        physnets,
        roles: cfg.roles.clone(),
        host: host.into(),
        dhcp,
        status,
    };
    let resync = Duration::from_secs(nc.resync_secs.max(1));
    (settings, Some(tokio::spawn(agent.run(resync))))
}

/// The first non-loopback address, IPv4 first.
fn first_routable(addrs: &[IpAddr]) -> Option<IpAddr> {
    let routable: Vec<&IpAddr> = addrs.iter().filter(|a| !a.is_loopback()).collect();
    routable.iter().find(|a| a.is_ipv4()).or(routable.first()).map(|a| **a)
}

/// The address to show for a wildcard listener: the first routable one.
fn banner_host(addrs: &[IpAddr], port: u16) -> String {
    let ip = first_routable(addrs).map(|a| a.to_string()).unwrap_or_else(|| "localhost".into());
    if port == 443 {
        ip
    } else {
        format!("{ip}:{port}")
    }
}

async fn wait_for_signal() -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
