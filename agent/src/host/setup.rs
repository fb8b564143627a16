//! Host setup for KVM: with vmx/svm present and the vendor module not loaded, load it (with
//! `nested=1` when configured). Without vmx/svm, say so once and carry on: guests are emulated.

use super::{HostFacts, VirtExt};
use crate::sys::modules::{ModuleError, ModuleLoader};

/// A module to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub module: &'static str,
    pub params: Vec<&'static str>,
}

/// What setup will do, decided from the facts alone.
pub fn plan(facts: &HostFacts, nested: bool) -> Option<Load> {
    let module = match facts.cpu.virtualization {
        VirtExt::Vmx => "kvm_intel",
        VirtExt::Svm => "kvm_amd",
        VirtExt::None => return None,
    };
    if facts.kvm.modules.iter().any(|m| m == module) {
        return None;
    }
    Some(Load { module, params: if nested { vec!["nested=1"] } else { vec![] } })
}

/// Carries out the plan, logging what it did. Returns whether a module was loaded (the caller
/// then probes again).
pub fn apply(facts: &HostFacts, nested: bool, loader: &dyn ModuleLoader) -> Result<bool, ModuleError> {
    if facts.cpu.virtualization == VirtExt::None {
        log::warn!("no vmx/svm on this CPU: guests will run under emulation (libvirt domain type qemu)");
        return Ok(false);
    }
    let loaded_nested = facts.kvm.nested;
    match plan(facts, nested) {
        Some(load) => {
            loader.load(load.module, &load.params)?;
            log::info!("loaded {} {}", load.module, load.params.join(" "));
            Ok(true)
        }
        None => {
            if nested && loaded_nested == Some(false) {
                log::warn!("nested virtualization is configured but the loaded KVM module has nested=off; reload the module to change it");
            }
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{probe, Accel};
    use crate::sys::hostfs::RootedFs;
    use crate::sys::kvm::{FixedKvm, KvmRun};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl ModuleLoader for Recorder {
        fn load(&self, module: &str, params: &[&str]) -> Result<(), ModuleError> {
            self.0.lock().unwrap().push(format!("{module} {}", params.join(" ")).trim().to_owned());
            Ok(())
        }
    }

    fn fixture(name: &str, kvm: KvmRun) -> HostFacts {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hosts/");
        probe(&RootedFs::new(format!("{root}{name}")), &FixedKvm(kvm))
    }

    #[test]
    fn plans_per_host() {
        struct Case {
            host: &'static str,
            nested: bool,
            loads: Vec<&'static str>,
        }
        let cases = [
            // kvm_intel already loaded with nested on: nothing to do.
            Case { host: "intel-vmx-nested", nested: true, loads: vec![] },
            // svm present, kvm_amd not loaded: load it, with nested when asked.
            Case { host: "amd-svm", nested: true, loads: vec!["kvm_amd nested=1"] },
            Case { host: "amd-svm", nested: false, loads: vec!["kvm_amd"] },
            Case { host: "no-virt", nested: true, loads: vec![] },
            Case { host: "pvm-no-flag", nested: true, loads: vec![] },
        ];
        for c in cases {
            let facts = fixture(c.host, KvmRun::Passed);
            let rec = Recorder::default();
            let loaded = apply(&facts, c.nested, &rec).unwrap();
            assert_eq!(*rec.0.lock().unwrap(), c.loads, "{}", c.host);
            assert_eq!(loaded, !c.loads.is_empty());
        }
        assert_eq!(fixture("no-virt", KvmRun::NotRun("x".into())).accel, Accel::Qemu);
    }
}
