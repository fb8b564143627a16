//! `cairn-test-guest`: builds (or finds in the cache) the small bootable test guest image the
//! compute tests upload to Glance, and prints its path. Upload it yourself with
//! `openstack image create --disk-format qcow2 --file "$(cargo run -q -p cairn-qemu-test --bin cairn-test-guest)" guest`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match cairn_qemu_test::guest::test_guest_image() {
        Ok(p) => {
            println!("{}", p.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn-test-guest: {e}");
            ExitCode::FAILURE
        }
    }
}
