//! The KVM run test: does /dev/kvm really run a guest? Opening it and KVM_CREATE_VM are not
//! enough (paravirtual providers accept both, then hang real guests). The test builds a VM with
//! one vCPU and one page of memory holding `hlt`, runs it, and passes only on KVM_EXIT_HLT.
//!
//! The guest runs in a child process (`cairn kvm-run-test`) so a hung KVM_RUN is killed by a
//! timeout instead of hanging the agent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The result of the run test.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum KvmRun {
    /// The guest executed `hlt` and KVM reported KVM_EXIT_HLT.
    Passed,
    /// Something failed; the text says what.
    Failed(String),
    /// The test was not run (no /dev/kvm).
    NotRun(String),
}

pub trait KvmTester: Send + Sync {
    fn run(&self) -> KvmRun;
}

const KVMIO: u64 = 0xAE;
const fn io(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}
const fn iow(nr: u64, size: u64) -> u64 {
    (1 << 30) | (size << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | (KVMIO << 8) | nr
}
const KVM_GET_API_VERSION: u64 = io(0x00);
const KVM_CREATE_VM: u64 = io(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
const KVM_CREATE_VCPU: u64 = io(0x41);
const KVM_RUN: u64 = io(0x80);
const KVM_SET_USER_MEMORY_REGION: u64 = iow(0x46, 32);
const KVM_GET_REGS: u64 = ior(0x81, REGS_SIZE as u64);
const KVM_SET_REGS: u64 = iow(0x82, REGS_SIZE as u64);
const KVM_GET_SREGS: u64 = ior(0x83, SREGS_SIZE as u64);
const KVM_SET_SREGS: u64 = iow(0x84, SREGS_SIZE as u64);
const KVM_EXIT_HLT: u32 = 5;
/// `struct kvm_regs`: 18 u64 registers, rip at 16 and rflags at 17.
const REGS_SIZE: usize = 144;
/// `struct kvm_sregs`: the cs segment (base u64, limit u32, selector u16, …) comes first.
const SREGS_SIZE: usize = 312;
const GUEST_ADDR: u64 = 0x1000;
const PAGE: usize = 0x1000;

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

/// Runs the one-instruction guest in this process; called in the child.
pub fn run_hlt_guest() -> io::Result<()> {
    // SAFETY: every ioctl below gets a valid fd and, where it takes a pointer, a buffer of the
    // size its number encodes; the mappings live until the end of this function.
    unsafe {
        let kvm = check(libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC), "open /dev/kvm")?;
        let kvm = OwnedFd::from_raw_fd(kvm);
        let version = check(libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION as _, 0), "KVM_GET_API_VERSION")?;
        if version != 12 {
            return Err(io::Error::other(format!("KVM API version {version}, expected 12")));
        }
        let vm = OwnedFd::from_raw_fd(check(libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM as _, 0), "KVM_CREATE_VM")?);
        let mem = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        *(mem as *mut u8) = 0xf4; // hlt
        let region: [u64; 4] = [0, GUEST_ADDR, PAGE as u64, mem as u64]; // slot+flags, gpa, size, uaddr
        check(
            libc::ioctl(vm.as_raw_fd(), KVM_SET_USER_MEMORY_REGION as _, region.as_ptr()),
            "KVM_SET_USER_MEMORY_REGION",
        )?;
        let vcpu =
            OwnedFd::from_raw_fd(check(libc::ioctl(vm.as_raw_fd(), KVM_CREATE_VCPU as _, 0), "KVM_CREATE_VCPU")?);
        let run_size = check(libc::ioctl(kvm.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE as _, 0), "KVM_GET_VCPU_MMAP_SIZE")?;
        let run = libc::mmap(
            std::ptr::null_mut(),
            run_size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            vcpu.as_raw_fd(),
            0,
        );
        if run == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut sregs = [0u8; SREGS_SIZE];
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_GET_SREGS as _, sregs.as_mut_ptr()), "KVM_GET_SREGS")?;
        sregs[0..8].copy_from_slice(&0u64.to_ne_bytes()); // cs.base
        sregs[12..14].copy_from_slice(&0u16.to_ne_bytes()); // cs.selector
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_SET_SREGS as _, sregs.as_ptr()), "KVM_SET_SREGS")?;
        let mut regs = [0u64; REGS_SIZE / 8];
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_GET_REGS as _, regs.as_mut_ptr()), "KVM_GET_REGS")?;
        regs[16] = GUEST_ADDR; // rip
        regs[17] = 0x2; // rflags: reserved bit 1
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_SET_REGS as _, regs.as_ptr()), "KVM_SET_REGS")?;
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_RUN as _, 0), "KVM_RUN")?;
        let exit_reason = *((run as *const u8).add(8) as *const u32);
        if exit_reason == KVM_EXIT_HLT {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "guest exited with reason {exit_reason}, expected KVM_EXIT_HLT ({KVM_EXIT_HLT})"
            )))
        }
    }
}

/// Runs the test in a child process of this binary, killed after `timeout`.
pub struct ChildKvmTester {
    pub timeout: Duration,
}

impl KvmTester for ChildKvmTester {
    fn run(&self) -> KvmRun {
        if !std::path::Path::new("/dev/kvm").exists() {
            return KvmRun::NotRun("/dev/kvm does not exist".into());
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return KvmRun::Failed(format!("cannot find own executable: {e}")),
        };
        let mut child = match Command::new(exe).arg("kvm-run-test").stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
        {
            Ok(c) => c,
            Err(e) => return KvmRun::Failed(format!("spawning the test: {e}")),
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return KvmRun::Passed,
                Ok(Some(_)) => {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = io::Read::read_to_string(&mut s, &mut err);
                    }
                    return KvmRun::Failed(err.trim().to_owned());
                }
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return KvmRun::Failed(format!(
                        "KVM_RUN did not return within {:?}: the guest hangs",
                        self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return KvmRun::Failed(format!("waiting for the test: {e}")),
            }
        }
    }
}

/// A fixed answer, for tests of the probe.
pub struct FixedKvm(pub KvmRun);

impl KvmTester for FixedKvm {
    fn run(&self) -> KvmRun {
        self.0.clone()
    }
}
