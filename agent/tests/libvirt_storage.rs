//! The libvirt storage layer against a real libvirtd (`qemu:///system`; `make test` starts it
//! without systemd): a dir pool in a temporary directory, volumes of every format created,
//! grown, cloned, overlaid, uploaded to and deleted, checked with `qemu-img info`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use cairn_agent::model::storage::{PoolSpec, VolumeFormat};
use cairn_agent::sys::libvirt::{pool_xml, same_storage, volume_xml, Libvirt, LibvirtError, Virt};
use std::process::Command;

fn info(path: &str) -> serde_json::Value {
    let out = Command::new("qemu-img").args(["info", "--output=json", "-U", path]).output().unwrap();
    assert!(out.status.success(), "qemu-img info {path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn connect() -> Virt {
    common::require_root("libvirt storage on qemu:///system");
    Virt::connect("qemu:///system").expect("libvirtd is not running: `make test` (or `make libvirtd`) starts it")
}

#[test]
fn dir_pool_volumes_of_every_format() {
    let lv = connect();
    let dir = tempfile::tempdir().unwrap();
    let pool = format!("cairn-test-{}", std::process::id());
    let path = dir.path().join("pool");
    let want = pool_xml(&pool, &PoolSpec::Dir { path: path.to_string_lossy().into(), format: None });
    lv.define_pool(&want).unwrap();
    let have = lv.pool_definition(&pool).unwrap();
    assert!(same_storage(&have, &want), "libvirt's XML reads back as the same storage: {have:?}");
    let elsewhere = pool_xml(&pool, &PoolSpec::Dir { path: "/elsewhere".into(), format: None });
    assert!(!same_storage(&have, &elsewhere));
    lv.build_pool(&pool).unwrap();
    lv.start_pool(&pool).unwrap();
    lv.set_autostart(&pool, true).unwrap();
    let pi = lv.pool_info(&pool).unwrap();
    assert!(pi.active && pi.capacity > 0, "{pi:?}");

    const MIB: u64 = 1 << 20;
    for (name, format) in
        [("v-raw", VolumeFormat::Raw), ("v-qcow2", VolumeFormat::Qcow2), ("v-vmdk", VolumeFormat::Vmdk)]
    {
        let v = lv.create_volume(&pool, &volume_xml(name, 64 * MIB, format, None)).unwrap();
        let i = info(&v.path);
        assert_eq!(i["format"], format.as_str(), "{name}");
        assert_eq!(i["virtual-size"], 64 * MIB, "{name}");
        assert_eq!(lv.volume_info(&pool, name).unwrap().capacity, 64 * MIB);
    }
    // Grow raw and qcow2.
    for name in ["v-raw", "v-qcow2"] {
        lv.resize_volume(&pool, name, 128 * MIB).unwrap();
        let p = lv.volume_info(&pool, name).unwrap().path;
        assert_eq!(info(&p)["virtual-size"], 128 * MIB, "{name} grown");
    }
    // Data in, cloned (converted) to qcow2, same bytes out.
    let data: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    lv.upload(&pool, "v-raw", &mut data.as_slice(), MIB).unwrap();
    let c =
        lv.clone_volume(&pool, &volume_xml("v-clone", 128 * MIB, VolumeFormat::Qcow2, None), &pool, "v-raw").unwrap();
    assert_eq!(info(&c.path)["format"], "qcow2");
    let back = dir.path().join("back.raw");
    let conv = Command::new("qemu-img").args(["convert", "-U", "-O", "raw", &c.path]).arg(&back).output().unwrap();
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    assert_eq!(&std::fs::read(&back).unwrap()[..MIB as usize], data.as_slice(), "the clone holds the data");
    // An instant clone: a qcow2 overlay of an image file.
    let image = dir.path().join("image.qcow2");
    assert!(Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&image)
        .arg("32M")
        .output()
        .unwrap()
        .status
        .success());
    let o = lv
        .create_volume(
            &pool,
            &volume_xml(
                "v-overlay",
                1 << 30,
                VolumeFormat::Qcow2,
                Some((&image.to_string_lossy(), VolumeFormat::Qcow2)),
            ),
        )
        .unwrap();
    let oi = info(&o.path);
    assert_eq!(oi["backing-filename"], image.to_string_lossy().as_ref());
    assert_eq!(oi["virtual-size"], 1u64 << 30, "the overlay is bigger than its image");

    // A pool that is full: a clear error and no half-made volume.
    let huge = volume_xml("v-huge", 1 << 50, VolumeFormat::Raw, None);
    assert!(matches!(lv.create_volume(&pool, &huge), Err(LibvirtError::Full { .. })));
    assert!(!lv.volume_names(&pool).unwrap().contains(&"v-huge".to_string()));
    assert!(matches!(
        lv.create_volume(&pool, &volume_xml("v-raw", MIB, VolumeFormat::Raw, None)),
        Err(LibvirtError::VolumeExists { .. })
    ));

    // Everything goes; the pool too.
    let mut names = lv.volume_names(&pool).unwrap();
    names.sort();
    assert_eq!(names, ["v-clone", "v-overlay", "v-qcow2", "v-raw", "v-vmdk"]);
    for n in names {
        lv.delete_volume(&pool, &n).unwrap();
    }
    assert!(lv.volume_names(&pool).unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0, "no files left in the pool");
    lv.destroy_pool(&pool).unwrap();
    lv.undefine_pool(&pool).unwrap();
    assert!(!lv.pool_names().unwrap().contains(&pool));
}

/// A Ceph RBD pool, live: only when `CAIRN_TEST_CEPH` names a TOML file with the pool's settings
/// as in the agent's config (`type = "rbd"`, `monitors`, `pool`, `user`, `secret_uuid`,
/// `key_file`). This machine has no Ceph cluster, so CI skips it and says so.
#[test]
fn rbd_pool_against_a_real_cluster() {
    let Some(file) = std::env::var_os("CAIRN_TEST_CEPH") else {
        eprintln!("SKIP rbd_pool_against_a_real_cluster: CAIRN_TEST_CEPH does not name a Ceph pool file");
        return;
    };
    let lv = connect();
    let spec: PoolSpec = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let PoolSpec::Rbd { user, secret_uuid, key_file: Some(key), .. } = &spec else {
        panic!("CAIRN_TEST_CEPH must describe an rbd pool with a key_file: {spec:?}")
    };
    let pool = format!("cairn-ceph-{}", std::process::id());
    let secret = cairn_agent::sys::libvirt::ceph_secret_xml(secret_uuid, user);
    lv.define_secret(&secret, &cairn_agent::sys::libvirt::read_ceph_key(key).unwrap()).unwrap();
    lv.define_pool(&pool_xml(&pool, &spec)).unwrap();
    lv.start_pool(&pool).unwrap();
    assert!(lv.pool_info(&pool).unwrap().active);
    const MIB: u64 = 1 << 20;
    let name = format!("cairn-test-{}", std::process::id());
    lv.create_volume(&pool, &volume_xml(&name, 64 * MIB, VolumeFormat::Raw, None)).unwrap();
    lv.resize_volume(&pool, &name, 128 * MIB).unwrap();
    assert_eq!(lv.volume_info(&pool, &name).unwrap().capacity, 128 * MIB);
    let clone = format!("{name}-clone");
    lv.clone_volume(&pool, &volume_xml(&clone, 128 * MIB, VolumeFormat::Raw, None), &pool, &name).unwrap();
    for n in [&clone, &name] {
        lv.delete_volume(&pool, n).unwrap();
    }
    lv.refresh_pool(&pool).unwrap();
    assert!(!lv.volume_names(&pool).unwrap().iter().any(|n| n.starts_with(&name)), "no test volumes left");
    lv.destroy_pool(&pool).unwrap();
    lv.undefine_pool(&pool).unwrap();
}
