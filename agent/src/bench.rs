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
    /// address allocated through the log), upload (a 1 GiB image, against `cp`), volume (a
    /// volume from that image: qcow2 overlay against full copy; needs root and libvirtd).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["issue".to_string(), "validate".into(), "projects".into(), "create".into(), "port".into(), "upload".into(), "volume".into()])]
    pub ops: Vec<String>,
    /// Size of the image for `upload` and `volume`, MiB.
    #[arg(long, default_value_t = 1024)]
    pub image_mib: u64,
}

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

/// Starts `cairn agent` from this executable in a temporary data dir.
fn spawn_agent(password: &str) -> Result<(Spawned, SocketAddr, String), BoxError> {
    let dir = tempfile::tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    // API only: the benchmark must not build bridges on this machine.
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, "roles = []\n[storage]\nenabled = false\n")?;
    let child = Command::new(std::env::current_exe()?)
        .args(["agent", "--config"])
        .arg(&config)
        .args(["--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.path().join("data"))
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
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for w in 0..c {
        let (client, op, token, password, net) =
            (client.clone(), op.to_owned(), token.to_owned(), password.to_owned(), net.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = client.connect().await?;
            let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, (w as u64) << 32);
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
            let (s, addr, ca) = spawn_agent(&password)?;
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
    for op in args.ops.iter().filter(|o| *o != "upload" && *o != "volume") {
        // Creates are replicated, fsynced writes: measured one at a time as the target says.
        let levels: Vec<usize> = if op == "create" || op == "port" { vec![1] } else { args.concurrency.clone() };
        for &c in &levels {
            let f = measure(&client, op, c, &token, &password, dur, &net).await?;
            let rps = f.latencies_us.len() as f64 / f.elapsed.as_secs_f64();
            println!(
                "peer=cairn op={op} c={c} rps={rps:.0} p50_ms={:.2} p99_ms={:.2} errors={} rss_mib={}",
                pct(&f.latencies_us, 0.50),
                pct(&f.latencies_us, 0.99),
                f.errors,
                rss_mib(pid)
            );
        }
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
