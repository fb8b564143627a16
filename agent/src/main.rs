//! `cairn`: the node agent (`cairn agent`), the host probe (`cairn probe`), the CA printer
//! (`cairn ca`), join tokens (`cairn token`), the nodes (`cairn node`) and the benchmark
//! (`cairn bench`).

use cairn_agent::config::Config;
use cairn_agent::host;
use cairn_agent::sys::{hostfs::RootedFs, kvm};
use clap::{Parser, Subcommand};
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "cairn", version, about = "Cairn node agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node agent (the daemon).
    Agent {
        /// Configuration file (default /etc/cairn/config.toml, optional).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (state, keys, certificates).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address of the HTTPS API.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the peer port (mutual TLS between nodes; default 0.0.0.0:7443).
        #[arg(long)]
        peer_listen: Option<SocketAddr>,
        /// Join the cluster this token (from `cairn token create`) names.
        #[arg(long, value_name = "TOKEN")]
        join: Option<String>,
    },
    /// Print what this host offers: CPU, virtualization, KVM, memory, NICs, disks.
    Probe {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Read /proc, /sys and /dev below this root (fixture trees).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Seconds before a hanging KVM test guest is judged a failure.
        #[arg(long, default_value_t = 5)]
        kvm_timeout: u64,
    },
    /// Print the cluster CA certificate (PEM), for clients' --os-cacert.
    Ca {
        #[arg(long, default_value = "/var/lib/cairn")]
        data_dir: PathBuf,
    },
    /// Check a node's API from here: reachable over TLS, its CA fingerprint, /healthz.
    Check {
        /// The node's API, e.g. https://10.0.0.5 or https://10.0.0.5:8443
        url: String,
        /// Keep trying for this many seconds.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// The CA's SHA-256 fingerprint it must present.
        #[arg(long)]
        ca_fingerprint: Option<String>,
    },
    /// Join tokens for new nodes (asks the API with the openstack client's OS_* settings).
    #[command(subcommand)]
    Token(cairn_agent::cluster::cli::TokenCmd),
    /// The cluster's nodes (asks the API with the openstack client's OS_* settings).
    #[command(subcommand)]
    Node(cairn_agent::cluster::cli::NodeCmd),
    /// Benchmark an agent over HTTPS (starts one unless --url is given).
    Bench(cairn_agent::bench::BenchArgs),
    /// Run the one-instruction KVM guest in this process (used by the probe).
    #[command(hide = true)]
    KvmRunTest {
        #[arg(long, default_value = "real")]
        mode: String,
    },
}

fn report(e: &dyn Error) -> ExitCode {
    eprintln!("cairn: error: {}", cairn_agent::error_chain(e));
    ExitCode::FAILURE
}

/// glibc tuning for a long-running agent: a fixed mmap threshold, so argon2's 19 MiB buffers are
/// returned to the system when freed (glibc's sliding threshold would keep them in the heap),
/// and few malloc arenas (each thread otherwise gets its own, each keeping freed memory).
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Agent { config, data_dir, listen, peer_listen, join } => {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            let credential = cairn_agent::config::credential_path();
            let mut cfg = match Config::load(config.as_deref(), &credential, &cmdline) {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(l) = peer_listen {
                cfg.peer_listen = l;
            }
            if join.is_some() {
                cfg.join_token = join;
            }
            cairn_agent::logging::init(cfg.level());
            if credential.exists() {
                log::info!("settings from the credential {} merged over the config file", credential.display());
            }
            for unknown in cairn_agent::config::cmdline_unknown(&cmdline) {
                log::warn!("ignoring unknown kernel command line option {unknown}");
            }
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return report(&e),
            };
            match rt.block_on(cairn_agent::daemon::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    report(&e)
                }
            }
        }
        Cmd::Probe { json, root, kvm_timeout } => {
            let tester: Box<dyn kvm::KvmTester> = if root == std::path::Path::new("/") {
                Box::new(kvm::ChildKvmTester { timeout: Duration::from_secs(kvm_timeout) })
            } else {
                Box::new(kvm::FixedKvm(kvm::KvmRun::NotRun(
                    "fixture root: the KVM test runs only on the real host".into(),
                )))
            };
            let facts = host::probe(&RootedFs::new(&root), tester.as_ref());
            if json {
                match serde_json::to_string_pretty(&facts) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return report(&e),
                }
            } else {
                print!("{}", host::render_table(&facts));
            }
            ExitCode::SUCCESS
        }
        Cmd::Ca { data_dir } => match std::fs::read_to_string(data_dir.join("pki/ca.pem")) {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        },
        Cmd::Check { url, wait, ca_fingerprint } => {
            match cairn_agent::check::run(&url, Duration::from_secs(wait), ca_fingerprint.as_deref()) {
                Ok(line) => {
                    println!("cairn check: {line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("cairn check: FAILED: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Token(cmd) => match cairn_agent::cluster::cli::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e.as_ref()),
        },
        Cmd::Node(cmd) => match cairn_agent::cluster::cli::nodes(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e.as_ref()),
        },
        Cmd::Bench(args) => match cairn_agent::bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e.as_ref()),
        },
        Cmd::KvmRunTest { mode } => {
            match kvm::run_hlt_guest(if mode == "boot" { kvm::Mode::Boot } else { kvm::Mode::Real }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
