//! Everything that touches the machine, each behind a trait with a real implementation here
//! and a fake for tests: files under /proc and /sys ([`hostfs`]), the KVM run test ([`kvm`]),
//! kernel modules ([`modules`]), libvirt's storage ([`libvirt`]), links, addresses and routes ([`netlink`]) in named network
//! namespaces ([`netns`]) and systemd's notify socket ([`notify`]).

pub mod hostfs;
pub mod kvm;
pub mod libvirt;
pub mod modules;
pub mod netlink;
pub mod netns;
pub mod notify;
pub mod tool;
