//! The KVM run test: does /dev/kvm really run a guest? Opening it and KVM_CREATE_VM are not
//! enough (paravirtual providers accept both, then hang real guests). The test builds a VM with
//! one vCPU and memory holding `hlt`, runs it, and passes only on KVM_EXIT_HLT — twice: first
//! `hlt` in real mode, then a guest that switches itself to protected and long mode with paging
//! before its `hlt`, as a kernel does when it boots.
//!
//! The guest runs in a child process (`cairn kvm-run-test`) so a hung KVM_RUN is killed by a
//! timeout instead of hanging the agent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The result of the run test.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
/// `struct kvm_cpuid2` is a header of 8 bytes (nent, padding) followed by its entries.
const KVM_GET_SUPPORTED_CPUID: u64 = (3 << 30) | (8 << 16) | (KVMIO << 8) | 0x05;
const KVM_SET_CPUID2: u64 = iow(0x90, 8);
/// `struct kvm_cpuid_entry2` is 10 u32 words; room for this many entries.
const CPUID_ENTRIES: usize = 128;
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
/// Guest memory: 2 MiB at guest address 0, identity-mapped by one large page in long mode.
const MEM: usize = 0x20_0000;
const STACK_TOP: u64 = 0x8000;
const PML4: usize = 0x2000;
const PDPT: usize = 0x3000;
const PD: usize = 0x4000;
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_LARGE: u64 = 0x80;

/// Which stage of the test to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `hlt` at 0x1000 in real mode.
    Real,
    /// The guest itself goes real → protected → long mode (lgdt, CR0.PE, far jump, CR4.PAE,
    /// CR3, EFER.LME by wrmsr, CR0.PG, far jump), loads an IDT and raises `int3`; the handler
    /// executes `hlt`. As a kernel boots: mode switches, then exceptions through its own IDT.
    Boot,
}

/// Where [`Mode::Boot`]'s breakpoint handler starts.
const BP_HANDLER: u64 = 0x1080;

/// Machine code for [`Mode::Boot`], loaded at 0x1000, with its GDT at 0x1200.
const BOOT_CODE: &[(usize, &[u8])] = &[
    // 16-bit, at 0x1000: cli; lgdt [0x1100]; mov eax,cr0; or al,1; mov cr0,eax; jmp 0x08:0x1020
    (
        0x1000,
        &[
            0xFA, 0x0F, 0x01, 0x16, 0x00, 0x11, 0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0, 0xEA, 0x20, 0x10, 0x08,
            0x00,
        ],
    ),
    // 32-bit, at 0x1020: cr4 |= PAE; cr3 = 0x2000; EFER |= LME (rdmsr/wrmsr); cr0 |= PG; jmp 0x18:0x1060
    (
        0x1020,
        &[
            0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0, 0xB8, 0x00, 0x20, 0x00, 0x00, 0x0F, 0x22, 0xD8, 0xB9,
            0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30, 0x0F, 0x20, 0xC0, 0x0D, 0x00,
            0x00, 0x00, 0x80, 0x0F, 0x22, 0xC0, 0xEA, 0x60, 0x10, 0x00, 0x00, 0x18, 0x00,
        ],
    ),
    // 64-bit, at 0x1060: lidt [0x1300]; int3; (not reached:) ud2
    (0x1060, &[0x0F, 0x01, 0x1C, 0x25, 0x00, 0x13, 0x00, 0x00, 0xCC, 0x0F, 0x0B]),
    // 64-bit, at 0x1080: the #BP handler: hlt
    (0x1080, &[0xF4]),
    // IDTR at 0x1300: limit 63 (vectors 0-3), base 0x1400
    (0x1300, &[0x3F, 0x00, 0x00, 0x14, 0, 0, 0, 0, 0, 0]),
    // IDT entry 3 at 0x1430: handler 0x1080, selector 0x18, present 64-bit interrupt gate
    (0x1430, &[0x80, 0x10, 0x18, 0x00, 0x00, 0x8E, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    // GDTR at 0x1100: limit 31, base 0x1200
    (0x1100, &[0x1F, 0x00, 0x00, 0x12, 0x00, 0x00]),
    // GDT at 0x1200: null, 32-bit code (0x08), 32-bit data (0x10), 64-bit code (0x18)
    (
        0x1200,
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0x9A, 0xCF, 0x00, 0xFF, 0xFF, 0, 0, 0, 0x92, 0xCF, 0x00, 0xFF,
            0xFF, 0, 0, 0, 0x9A, 0xAF, 0x00,
        ],
    ),
];

/// Names the exit reasons a broken or refusing KVM gives.
fn exit_name(reason: u32) -> String {
    match reason {
        2 => "KVM_EXIT_IO".into(),
        6 => "KVM_EXIT_MMIO".into(),
        8 => "KVM_EXIT_SHUTDOWN (triple fault)".into(),
        9 => "KVM_EXIT_FAIL_ENTRY".into(),
        17 => "KVM_EXIT_INTERNAL_ERROR".into(),
        other => format!("exit reason {other}"),
    }
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Runs the one-instruction guest in this process in `mode`; called in the child.
pub fn run_hlt_guest(mode: Mode) -> io::Result<()> {
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
            MEM,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let guest = std::slice::from_raw_parts_mut(mem as *mut u8, MEM);
        match mode {
            Mode::Real => guest[GUEST_ADDR as usize] = 0xf4, // hlt
            Mode::Boot => {
                for (at, code) in BOOT_CODE {
                    guest[*at..*at + code.len()].copy_from_slice(code);
                }
            }
        }
        put_u64(guest, PML4, PDPT as u64 | PTE_PRESENT_RW);
        put_u64(guest, PDPT, PD as u64 | PTE_PRESENT_RW);
        put_u64(guest, PD, PTE_PRESENT_RW | PDE_LARGE); // 2 MiB page at 0
        let region: [u64; 4] = [0, 0, MEM as u64, mem as u64]; // slot+flags, gpa, size, uaddr
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
        // Without a CPUID that advertises long mode, KVM refuses EFER.LME (the wrmsr faults).
        let mut cpuid = vec![0u32; 2 + CPUID_ENTRIES * 10];
        cpuid[0] = CPUID_ENTRIES as u32;
        check(
            libc::ioctl(kvm.as_raw_fd(), KVM_GET_SUPPORTED_CPUID as _, cpuid.as_mut_ptr()),
            "KVM_GET_SUPPORTED_CPUID",
        )?;
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_SET_CPUID2 as _, cpuid.as_ptr()), "KVM_SET_CPUID2")?;
        let mut sregs = [0u8; SREGS_SIZE];
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_GET_SREGS as _, sregs.as_mut_ptr()), "KVM_GET_SREGS")?;
        put_u64(&mut sregs, 0, 0); // cs.base
        sregs[12..14].copy_from_slice(&0u16.to_ne_bytes()); // cs.selector
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_SET_SREGS as _, sregs.as_ptr()), "KVM_SET_SREGS")?;
        let mut regs = [0u64; REGS_SIZE / 8];
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_GET_REGS as _, regs.as_mut_ptr()), "KVM_GET_REGS")?;
        regs[6] = STACK_TOP; // rsp, for the exception frame
        regs[16] = GUEST_ADDR; // rip
        regs[17] = 0x2; // rflags: reserved bit 1
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_SET_REGS as _, regs.as_ptr()), "KVM_SET_REGS")?;
        check(libc::ioctl(vcpu.as_raw_fd(), KVM_RUN as _, 0), "KVM_RUN")?;
        let exit_reason = *((run as *const u8).add(8) as *const u32);
        if exit_reason == KVM_EXIT_HLT {
            // Where the guest stopped tells whether it took the path meant for it.
            check(libc::ioctl(vcpu.as_raw_fd(), KVM_GET_REGS as _, regs.as_mut_ptr()), "KVM_GET_REGS")?;
            let want = match mode {
                Mode::Real => GUEST_ADDR + 1,
                Mode::Boot => BP_HANDLER + 1,
            };
            if regs[16] == want {
                Ok(())
            } else {
                Err(io::Error::other(format!("the {mode:?} guest halted at {:#x}, not at {want:#x}", regs[16])))
            }
        } else {
            Err(io::Error::other(format!(
                "the {mode:?} guest stopped with {}, not KVM_EXIT_HLT",
                exit_name(exit_reason)
            )))
        }
    }
}

/// Runs the test in child processes of this binary (`cairn kvm-run-test --mode real|boot`),
/// each killed after `timeout`.
pub struct ChildKvmTester {
    pub timeout: Duration,
}

impl KvmTester for ChildKvmTester {
    fn run(&self) -> KvmRun {
        match self.stage("real") {
            KvmRun::Passed => match self.stage("boot") {
                KvmRun::Passed => KvmRun::Passed,
                KvmRun::Failed(why) => {
                    KvmRun::Failed(format!("real-mode guest ran, but the mode-switching guest failed: {why}"))
                }
                other => other,
            },
            other => other,
        }
    }
}

impl ChildKvmTester {
    fn stage(&self, mode: &str) -> KvmRun {
        if !std::path::Path::new("/dev/kvm").exists() {
            return KvmRun::NotRun("/dev/kvm does not exist".into());
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return KvmRun::Failed(format!("cannot find own executable: {e}")),
        };
        let mut child = match Command::new(exe)
            .args(["kvm-run-test", "--mode", mode])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
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
