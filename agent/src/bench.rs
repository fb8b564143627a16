//! `cairn bench`: drives an agent over HTTPS with keep-alive connections and prints requests/s,
//! p50/p99 latency and the agent's RSS, one line per figure, in the same format as
//! shared/peers/keystone-bench.sh so the two can be compared side by side.

use crate::client::{Client, Conn};
use hyper::Method;
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Address of a running agent (host:port); when absent, one is started on a free port.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// CA certificate of the agent given with --addr.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Admin password of the agent given with --addr.
    #[arg(long, env = "CAIRN_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Concurrency levels (connections), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 32])]
    pub concurrency: Vec<usize>,
    /// Operations: issue, validate, projects, create (a project), port (a Neutron port with an
    /// address allocated through the log), replication (project creates at 1 and 64 clients on
    /// a 1-node and a 3-node cluster it starts, and the time from `--join` to voter), upload (a 1 GiB image, against `cp`), volume (a
    /// volume from that image: qcow2 overlay against full copy; needs root and libvirtd); boot
    /// (Rally's boot-and-delete on a compute node; needs root and libvirtd; only when asked).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["issue".to_string(), "validate".into(), "projects".into(), "create".into(), "port".into(), "upload".into(), "volume".into()])]
    pub ops: Vec<String>,
    /// Size of the image for `upload`, `volume` and the root-disk overlay of `boot`, MiB.
    #[arg(long, default_value_t = 1024)]
    pub image_mib: u64,
    /// `boot` (not run unless asked): servers booted and deleted per concurrency level.
    #[arg(long, default_value_t = 20)]
    pub servers: usize,
    /// `boot`: concurrency levels (servers in flight at once), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![4, 20])]
    pub boot_concurrency: Vec<usize>,
    /// `boot`: a bootable image (the test guest) whose console says `CAIRN-TEST-GUEST ready`;
    /// without it the servers boot an empty disk and only the control plane is timed.
    #[arg(long)]
    pub guest: Option<PathBuf>,
}

/// The configuration of an agent the benchmark starts: API only, or (for `boot`) a compute
/// node that takes 20 small servers on 2 cores (vCPU overcommit 16, Nova's former default).
const API_ONLY: &str = "roles = []\n[storage]\nenabled = false\n";
const COMPUTE_NODE: &str = "roles = [\"compute\"]\n[storage]\nenabled = false\n[compute]\n\
    cpu_allocation_ratio = 16.0\nquota_instances = 1000\nquota_cores = 1000\nquota_ram_mb = 1048576\n";

/// The agent under test, when the benchmark started it.
struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `cairn agent` from this executable in a temporary data dir (which QEMU, running as
/// libvirt's user, may traverse); never with the network role, which would build bridges on
/// this machine.
fn spawn_agent(password: &str, config_text: &str) -> Result<(Spawned, SocketAddr, String), BoxError> {
    spawn_node(password, config_text, "127.0.0.1", &[])
}

/// Starts `cairn agent` on address `ip` with more arguments (`--join TOKEN`).
fn spawn_node(
    password: &str,
    config_text: &str,
    ip: &str,
    args: &[&str],
) -> Result<(Spawned, SocketAddr, String), BoxError> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    let addr: SocketAddr = format!("{ip}:{}", free_port()?).parse()?;
    let peer = format!("{ip}:{}", free_port()?);
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, config_text)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["agent", "--config"])
        .arg(&config)
        .args(["--listen", &addr.to_string(), "--peer-listen", &peer, "--data-dir"])
        .arg(dir.path().join("data"))
        .args(args)
        .env("CAIRN_ADMIN_PASSWORD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let spawned = Spawned { child, _dir: dir };
    let ca = spawned._dir.path().join("data/pki/ca.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(pem) = std::fs::read_to_string(&ca) {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok((spawned, addr, pem));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the agent did not start listening within 60 s".into())
}

fn rss_mib(pid: Option<u32>) -> String {
    let Some(pid) = pid else { return "na".into() };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1}", kib / 1024.0))
        .unwrap_or_else(|| "na".into())
}

struct Figures {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

/// One request of `op`; `n` makes names unique; `net` is the network ports go on.
async fn one(conn: &mut Conn, op: &str, token: &str, password: &str, n: u64, net: &str) -> Result<bool, BoxError> {
    let r = match op {
        "issue" => return Ok(conn.login("admin", password, "admin").await?.is_some()),
        "validate" => {
            conn.request(
                Method::GET,
                "/identity/v3/auth/tokens?nocatalog",
                &[("x-auth-token", token), ("x-subject-token", token)],
                None,
            )
            .await?
        }
        "projects" => conn.request(Method::GET, "/identity/v3/projects", &[("x-auth-token", token)], None).await?,
        "create" => {
            let body = serde_json::json!({"project": {"name": format!("bench-{}-{n}", std::process::id())}});
            conn.request(
                Method::POST,
                "/identity/v3/projects",
                &[("x-auth-token", token)],
                Some(body.to_string().into_bytes()),
            )
            .await?
        }
        "port" => {
            let body = serde_json::json!({"port": {"network_id": net, "name": format!("bench-{n}")}});
            conn.request(
                Method::POST,
                "/network/v2.0/ports",
                &[("x-auth-token", token)],
                Some(body.to_string().into_bytes()),
            )
            .await?
        }
        other => return Err(format!("unknown op {other:?}").into()),
    };
    Ok((200..300).contains(&r.status))
}

/// A network with a /16 subnet for the port benchmark; returns its id.
async fn bench_network(conn: &mut Conn, token: &str) -> Result<String, BoxError> {
    let h = [("x-auth-token", token)];
    let body = serde_json::json!({"network": {"name": format!("bench-{}", std::process::id())}});
    let r = conn.request(Method::POST, "/network/v2.0/networks", &h, Some(body.to_string().into_bytes())).await?;
    let id = r.json()["network"]["id"].as_str().ok_or("creating the bench network failed")?.to_owned();
    let body = serde_json::json!({"subnet": {"network_id": id, "cidr": "10.200.0.0/16", "ip_version": 4}});
    let r = conn.request(Method::POST, "/network/v2.0/subnets", &h, Some(body.to_string().into_bytes())).await?;
    if r.status != 201 {
        return Err(format!("creating the bench subnet: {}", String::from_utf8_lossy(&r.body)).into());
    }
    Ok(id)
}

async fn measure(
    client: &Client,
    op: &str,
    c: usize,
    token: &str,
    password: &str,
    dur: Duration,
    net: &str,
) -> Result<Figures, BoxError> {
    // Each run names its creates apart from the runs before it.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for w in 0..c {
        let (client, op, token, password, net) =
            (client.clone(), op.to_owned(), token.to_owned(), password.to_owned(), net.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = client.connect().await?;
            let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, (run << 48) | ((w as u64) << 32));
            while Instant::now() < deadline {
                let t = Instant::now();
                n += 1;
                let ok = one(&mut conn, &op, &token, &password, n, &net).await.unwrap_or(false);
                lat.push(t.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            Ok::<_, BoxError>((lat, errors))
        }));
    }
    let mut f = Figures { latencies_us: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for t in tasks {
        let (lat, errors) = t.await??;
        f.latencies_us.extend(lat);
        f.errors += errors;
    }
    f.elapsed = start.elapsed();
    f.latencies_us.sort_unstable();
    Ok(f)
}

/// One line of figures: `peer=cairn <label>=<per second> p50_ms p99_ms errors rss_mib`.
fn print_figures(label: &str, f: &Figures, pid: Option<u32>) {
    let per_sec = f.latencies_us.len() as f64 / f.elapsed.as_secs_f64();
    println!(
        "peer=cairn {label}={per_sec:.0} p50_ms={:.2} p99_ms={:.2} errors={} rss_mib={}",
        pct(&f.latencies_us, 0.50),
        pct(&f.latencies_us, 0.99),
        f.errors,
        rss_mib(pid)
    );
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

pub fn run(args: BenchArgs) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> Result<(), BoxError> {
    let (spawned, addr, ca, password) = match args.addr {
        Some(addr) => {
            let ca = std::fs::read_to_string(args.ca_file.as_ref().ok_or("--addr needs --ca-file")?)?;
            (None, addr, ca, args.password.clone().ok_or("--addr needs --password or CAIRN_ADMIN_PASSWORD")?)
        }
        None => {
            let password = format!("bench-{}", crate::identity::token::new_audit_id());
            let (s, addr, ca) = spawn_agent(&password, API_ONLY)?;
            (Some(s), addr, ca, password)
        }
    };
    let pid = spawned.as_ref().map(|s| s.child.id());
    let client = Client::new(addr, &ca)?;
    let token = client.connect().await?.login("admin", &password, "admin").await?.ok_or("admin login failed")?;
    println!("# cairn bench against {addr}; password hashing {}", crate::identity::password::parameters());
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("peer=cairn op=idle rss_mib={}", rss_mib(pid));
    let dur = Duration::from_secs(args.duration);
    let net = if args.ops.iter().any(|o| o == "port") {
        bench_network(&mut client.connect().await?, &token).await?
    } else {
        String::new()
    };
    let scratch = tempfile::tempdir()?;
    let mut image = None;
    for op in args.ops.iter().filter(|o| *o == "upload" || *o == "volume") {
        let file = match &image {
            Some(f) => f,
            None => image.insert(make_image(scratch.path(), args.image_mib)?),
        };
        if op == "upload" {
            bench_upload(&client, &token, file, args.image_mib).await?;
        } else {
            bench_volume(scratch.path(), file, args.image_mib)?;
        }
    }
    if args.ops.iter().any(|o| o == "boot") {
        let file = match &image {
            Some(f) => f,
            None => image.insert(make_image(scratch.path(), args.image_mib)?),
        };
        bench_overlay(scratch.path(), file, args.image_mib)?;
        // Against the agent given with --addr (it must have the compute role), else its own.
        bench_boot(&args, args.addr.map(|_| (&client, token.as_str()))).await?;
    }
    if args.ops.iter().any(|o| o == "replication") {
        bench_replication(&client, &token, &password, pid, dur).await?;
    }
    for op in args.ops.iter().filter(|o| !["upload", "volume", "boot", "replication"].contains(&o.as_str())) {
        // Ports are measured one at a time, as the target for them says.
        let levels: Vec<usize> = if op == "port" { vec![1] } else { args.concurrency.clone() };
        for &c in &levels {
            let f = measure(&client, op, c, &token, &password, dur, &net).await?;
            print_figures(&format!("op={op} c={c} rps"), &f, pid);
        }
    }
    Ok(())
}

/// Replicated writes (project creates, each durably logged by a quorum before the answer) at 1
/// and 64 clients: on `lone` (the agent under test) and on a 3-node loopback cluster made here,
/// with the time each joining node takes from `cairn agent --join` to being a voter.
async fn bench_replication(
    lone: &Client,
    token: &str,
    password: &str,
    pid: Option<u32>,
    dur: Duration,
) -> Result<(), BoxError> {
    let report = |nodes: usize, c: usize, f: &Figures, pid: Option<u32>| {
        print_figures(&format!("op=replicated-write nodes={nodes} c={c} wps"), f, pid);
    };
    for c in [1, 64] {
        report(1, c, &measure(lone, "create", c, token, password, dur, "").await?, pid);
    }
    // A 3-node cluster on 127.0.0.1-3; each joiner's token is made on the node before it.
    let (seed, seed_addr, ca) = spawn_node(password, API_ONLY, "127.0.0.1", &[])?;
    let seed_client = Client::new(seed_addr, &ca)?;
    let admin = seed_client.connect().await?.login("admin", password, "admin").await?.ok_or("admin login failed")?;
    let mut nodes = vec![seed];
    for i in 2..=3u64 {
        let mut conn = seed_client.connect().await?;
        let h = [("x-auth-token", admin.as_str())];
        let r = conn.request(Method::POST, "/cairn/v1/tokens", &h, None).await?;
        let join = r.json()["token"]["token"].as_str().ok_or("no join token")?.to_owned();
        let started = Instant::now();
        let (node, _, _) = spawn_node(password, API_ONLY, &format!("127.0.0.{i}"), &["--join", &join])?;
        nodes.push(node);
        loop {
            let r = conn.request(Method::GET, "/cairn/v1/nodes", &h, None).await?;
            let voter =
                r.json()["nodes"].as_array().into_iter().flatten().any(|n| {
                    n["id"].as_u64() == Some(i) && matches!(n["raft_role"].as_str(), Some("follower" | "leader"))
                });
            if voter {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("node {i} was not a voter within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("peer=cairn op=join-to-voter node={i} seconds={:.2}", started.elapsed().as_secs_f64());
    }
    let leader_pid = Some(nodes[0].child.id());
    for c in [1, 64] {
        report(3, c, &measure(&seed_client, "create", c, &admin, password, dur, "").await?, leader_pid);
    }
    Ok(())
}

/// A raw image of `mib` MiB of non-repeating bytes (so nothing compresses or dedups it).
fn make_image(dir: &std::path::Path, mib: u64) -> Result<PathBuf, BoxError> {
    use std::io::Write;
    let path = dir.join("bench-image.raw");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block)?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(path)
}

fn mib_s(mib: u64, d: Duration) -> f64 {
    mib as f64 / d.as_secs_f64()
}

/// Uploads the image through Glance (streamed, hashed, checked) and copies it with `cp`.
async fn bench_upload(client: &Client, token: &str, file: &std::path::Path, mib: u64) -> Result<(), BoxError> {
    let copy = file.with_extension("copy");
    let t = Instant::now();
    let ok = Command::new("cp").arg(file).arg(&copy).status()?.success()
        && Command::new("sync").arg(&copy).status()?.success();
    let cp = t.elapsed();
    std::fs::remove_file(&copy)?;
    if !ok {
        return Err("cp failed".into());
    }
    let mut conn = client.connect().await?;
    let body = serde_json::json!({"name": "bench-upload", "disk_format": "raw", "container_format": "bare"});
    let h = [("x-auth-token", token)];
    let r = conn.request(Method::POST, "/image/v2/images", &h, Some(body.to_string().into_bytes())).await?;
    let id = r.json()["id"].as_str().ok_or("creating the bench image failed")?.to_owned();
    let t = Instant::now();
    let r = conn
        .upload(Method::PUT, &format!("/image/v2/images/{id}/file"), &h, tokio::fs::File::open(file).await?)
        .await?;
    let up = t.elapsed();
    if r.status != 204 {
        return Err(format!("upload: {} {}", r.status, String::from_utf8_lossy(&r.body)).into());
    }
    conn.request(Method::DELETE, &format!("/image/v2/images/{id}"), &h, None).await?;
    println!(
        "peer=cairn op=image-upload size_mib={mib} mib_s={:.0} cp_mib_s={:.0} vs_cp={:.2}",
        mib_s(mib, up),
        mib_s(mib, cp),
        cp.as_secs_f64() / up.as_secs_f64()
    );
    Ok(())
}

/// A volume from the image in a scratch libvirt dir pool: a qcow2 overlay, and a full copy.
fn bench_volume(dir: &std::path::Path, image: &std::path::Path, mib: u64) -> Result<(), BoxError> {
    use crate::model::storage::{PoolSpec, VolumeFormat};
    use crate::sys::libvirt::{pool_xml, volume_xml, Libvirt, Virt};
    if !nix::unistd::geteuid().is_root() {
        println!("# volume: skipped (needs root for qemu:///system)");
        return Ok(());
    }
    let lv = Virt::connect("qemu:///system")?;
    let pool = format!("cairn-bench-{}", std::process::id());
    let path = dir.join("pool").to_string_lossy().into_owned();
    lv.define_pool(&pool_xml(&pool, &PoolSpec::Dir { path, format: None }))?;
    let run = || -> Result<(Duration, Duration), BoxError> {
        lv.build_pool(&pool)?;
        lv.start_pool(&pool)?;
        let bytes = mib << 20;
        let img = image.to_string_lossy();
        let t = Instant::now();
        lv.create_volume(&pool, &volume_xml("overlay", bytes, VolumeFormat::Qcow2, Some((&img, VolumeFormat::Raw))))?;
        let overlay = t.elapsed();
        let t = Instant::now();
        let v = lv.create_volume(&pool, &volume_xml("copy", bytes, VolumeFormat::Qcow2, None))?;
        let ok = Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "qcow2"])
            .arg(image)
            .arg(&v.path)
            .status()?;
        if !ok.success() {
            return Err("qemu-img convert failed".into());
        }
        let copy = t.elapsed();
        for v in ["overlay", "copy"] {
            lv.delete_volume(&pool, v)?;
        }
        Ok((overlay, copy))
    };
    let r = run();
    let _ = lv.destroy_pool(&pool);
    let _ = lv.undefine_pool(&pool);
    let (overlay, copy) = r?;
    println!(
        "peer=cairn op=volume-from-image size_mib={mib} overlay_ms={:.1} full_copy_ms={:.0} overlay_faster={:.0}x",
        overlay.as_secs_f64() * 1000.0,
        copy.as_secs_f64() * 1000.0,
        copy.as_secs_f64() / overlay.as_secs_f64()
    );
    Ok(())
}

/// The root disk of a server: a qcow2 overlay on an image of `mib` MiB, as the compute driver
/// makes it.
fn bench_overlay(dir: &std::path::Path, image: &std::path::Path, mib: u64) -> Result<(), BoxError> {
    let mut times = vec![];
    for i in 0..5 {
        let disk = dir.join(format!("overlay-{i}.qcow2"));
        let t = Instant::now();
        crate::compute::driver::overlay(image, crate::model::image::DiskFormat::Raw, &disk, 1 << 30)?;
        times.push(t.elapsed().as_micros() as u64);
        std::fs::remove_file(&disk)?;
    }
    times.sort_unstable();
    println!(
        "peer=cairn op=root-overlay image_mib={mib} p50_ms={:.1} max_ms={:.1}",
        pct(&times, 0.5),
        pct(&times, 1.0)
    );
    Ok(())
}

/// What one boot took: accepted, ACTIVE (the domain started), the guest ready (when known).
struct BootTimes {
    accept: Duration,
    active: Duration,
    ready: Option<Duration>,
}

/// Polls `GET path` until `done` accepts the response (status, JSON), for at most `limit`.
async fn poll(
    conn: &mut Conn,
    token: &str,
    path: &str,
    every: Duration,
    limit: Duration,
    done: impl Fn(u16, &serde_json::Value) -> Result<bool, BoxError>,
) -> Result<(), BoxError> {
    let start = Instant::now();
    loop {
        let r = conn.request(Method::GET, path, &[("x-auth-token", token)], None).await?;
        if done(r.status, &r.json())? {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("{path}: not done after {} s", limit.as_secs()).into());
        }
        tokio::time::sleep(every).await;
    }
}

/// Boots one server, waits for ACTIVE (and the guest's ready line), deletes it and waits until
/// it is gone.
async fn boot_one(
    client: Client,
    token: String,
    image: String,
    flavor: String,
    name: String,
    guest: bool,
) -> Result<BootTimes, BoxError> {
    let mut conn = client.connect().await?;
    let h = [("x-auth-token", token.as_str())];
    let body =
        serde_json::json!({"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}});
    let t = Instant::now();
    let r = conn.request(Method::POST, "/compute/v2.1/servers", &h, Some(body.to_string().into_bytes())).await?;
    let accept = t.elapsed();
    let id = r.json()["server"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("create: {} {}", r.status, String::from_utf8_lossy(&r.body)))?;
    let path = format!("/compute/v2.1/servers/{id}");
    let minute = Duration::from_secs(60);
    poll(&mut conn, &token, &path, Duration::from_millis(20), 5 * minute, |_, j| {
        match j["server"]["status"].as_str() {
            Some("ACTIVE") => Ok(true),
            Some("ERROR") => Err(format!("server {id}: ERROR {}", j["server"]["fault"]).into()),
            _ => Ok(false),
        }
    })
    .await?;
    let active = t.elapsed();
    let mut ready = None;
    if guest {
        let action = format!("{path}/action");
        let ask = serde_json::json!({"os-getConsoleOutput": {"length": 50}}).to_string();
        let deadline = Instant::now() + 10 * minute;
        loop {
            let r = conn.request(Method::POST, &action, &h, Some(ask.clone().into_bytes())).await?;
            if r.json()["output"].as_str().is_some_and(|o| o.contains("CAIRN-TEST-GUEST ready")) {
                ready = Some(t.elapsed());
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("server {id}: the guest was not ready within 10 minutes").into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    conn.request(Method::DELETE, &path, &h, None).await?;
    poll(&mut conn, &token, &path, Duration::from_millis(100), 2 * minute, |status, _| Ok(status == 404)).await?;
    Ok(BootTimes { accept, active, ready })
}

/// Rally's boot-and-delete: `--servers` servers at each `--boot-concurrency`, timing accept →
/// ACTIVE (control plane: scheduling, the claim, the overlay, the config drive, the domain
/// started) and ACTIVE → the guest's ready line (guest boot, under TCG here).
async fn bench_boot(args: &BenchArgs, given: Option<(&Client, &str)>) -> Result<(), BoxError> {
    if given.is_none() && !nix::unistd::geteuid().is_root() {
        println!("# boot: skipped (a compute node needs root for qemu:///system)");
        return Ok(());
    }
    let password = format!("bench-{}", crate::identity::token::new_audit_id());
    let mut own = None;
    let (client, token) = match given {
        Some((c, t)) => (c.clone(), t.to_owned()),
        None => {
            let (s, addr, ca) = spawn_agent(&password, COMPUTE_NODE)?;
            own = Some(s);
            let client = Client::new(addr, &ca)?;
            let token =
                client.connect().await?.login("admin", &password, "admin").await?.ok_or("admin login failed")?;
            (client, token)
        }
    };
    let pid = own.as_ref().map(|s| s.child.id());
    let mut conn = client.connect().await?;
    let h = [("x-auth-token", token.as_str())];
    // The image: the guest, or 1 MiB of zeros (a disk with nothing to boot).
    let scratch = tempfile::tempdir()?;
    let (file, format) = match &args.guest {
        Some(g) => (g.clone(), "qcow2"),
        None => {
            let f = scratch.path().join("empty.raw");
            std::fs::write(&f, vec![0u8; 1 << 20])?;
            (f, "raw")
        }
    };
    let body = serde_json::json!({"name": "bench-boot", "disk_format": format, "container_format": "bare"});
    let r = conn.request(Method::POST, "/image/v2/images", &h, Some(body.to_string().into_bytes())).await?;
    let image = r.json()["id"].as_str().ok_or("creating the boot image failed")?.to_owned();
    let r = conn
        .upload(Method::PUT, &format!("/image/v2/images/{image}/file"), &h, tokio::fs::File::open(&file).await?)
        .await?;
    if r.status != 204 {
        return Err(format!("image upload: {} {}", r.status, String::from_utf8_lossy(&r.body)).into());
    }
    let body = serde_json::json!({"flavor": {"name": format!("bench-{}", std::process::id()), "vcpus": 1, "ram": 128, "disk": 1}});
    let r = conn.request(Method::POST, "/compute/v2.1/flavors", &h, Some(body.to_string().into_bytes())).await?;
    let flavor = r.json()["flavor"]["id"].as_str().ok_or("creating the boot flavor failed")?.to_owned();
    for &c in &args.boot_concurrency {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(c.max(1)));
        let start = Instant::now();
        let mut tasks = vec![];
        for i in 0..args.servers {
            let (client, token, image, flavor, gate) =
                (client.clone(), token.clone(), image.clone(), flavor.clone(), gate.clone());
            let guest = args.guest.is_some();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await?;
                boot_one(client, token, image, flavor, format!("bench-{c}-{i}"), guest).await
            }));
        }
        let (mut accept, mut active, mut ready, mut failed) = (vec![], vec![], vec![], vec![]);
        for t in tasks {
            match t.await? {
                Ok(b) => {
                    accept.push(b.accept.as_micros() as u64);
                    active.push(b.active.as_micros() as u64);
                    ready.extend(b.ready.map(|r| (r - b.active).as_micros() as u64));
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        for v in [&mut accept, &mut active, &mut ready] {
            v.sort_unstable();
        }
        let guest = if ready.is_empty() {
            "guest_boot=na".to_owned()
        } else {
            format!(
                "guest_boot_p50_s={:.1} guest_boot_p95_s={:.1}",
                pct(&ready, 0.5) / 1000.0,
                pct(&ready, 0.95) / 1000.0
            )
        };
        println!(
            "peer=cairn op=boot servers={} c={c} ok={}/{} accept_p50_ms={:.1} active_p50_ms={:.0} active_p95_ms={:.0} {guest} wall_s={:.1} rss_mib={}",
            args.servers,
            active.len(),
            args.servers,
            pct(&accept, 0.5),
            pct(&active, 0.5),
            pct(&active, 0.95),
            start.elapsed().as_secs_f64(),
            rss_mib(pid)
        );
        for e in failed.iter().take(3) {
            println!("# boot failure: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(super::pct(&v, 0.5), 50.0);
        assert_eq!(super::pct(&v, 0.99), 99.0);
        assert_eq!(super::pct(&[], 0.5), 0.0);
    }
}
