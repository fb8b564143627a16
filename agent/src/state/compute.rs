//! Applying Nova's commands: flavors (names unique, seeded once), their extra specs and access
//! lists, keypairs per user, the inventory each compute node reports, and servers: a create
//! claims its node's resources here, in log order, so racing creates cannot overbook a node.

use super::apply::{create, load, not_found, store};
use super::{
    Kind, Outcome, Refusal, StateError, CLOUD, FLAVORS, FLAVORS_SEEDED, FLAVOR_NAMES, KEYPAIRS, NODES, SERVERS,
};
use crate::model::compute::{
    check_extra_spec, check_tag, usage, AttachState, Flavor, Inventory, Resources, Server, ServerVolume, VmState,
    MAX_TAGS,
};
use crate::model::volume::{Attachment, Volume, VolumeStatus};
use crate::state::ComputeCommand;
use crate::state::VOLUMES;
use redb::{ReadableTable, WriteTransaction};

/// A volume a server may take: the caller's view of it checked (exists, `available`, in a pool
/// of the server's node).
fn reservable(tx: &WriteTransaction, s: &Server, volume_id: &str) -> Result<Result<Volume, Refusal>, StateError> {
    let Some(v) = load::<Volume>(tx, VOLUMES, volume_id)? else { return Ok(Err(not_found(Kind::Volume, volume_id))) };
    if v.status != VolumeStatus::Available {
        return Ok(Err(Refusal::Invalid(format!(
            "Invalid volume: volume {volume_id} status must be available, but current status is: {}",
            v.status.as_str()
        ))));
    }
    if !s.node.is_empty() && v.node != s.node {
        return Ok(Err(Refusal::Invalid(format!(
            "Volume {volume_id} is in a pool of node {}, server {} runs on node {}: volumes attach on their own node.",
            v.node, s.id, s.node
        ))));
    }
    Ok(Ok(v))
}

/// A volume's record as an attachment of the server leaves it.
fn attached(mut v: Volume, s: &Server, sv: &ServerVolume, at: u64) -> Volume {
    v.attachments = vec![Attachment {
        id: sv.attachment_id.clone(),
        server_id: s.id.clone(),
        host: s.node.clone(),
        device: sv.device.clone(),
        attached_at: at,
        status: crate::model::volume::AttachStatus::Attached,
        mode: "rw".into(),
    }];
    v.status = VolumeStatus::InUse;
    v.updated_at = at;
    v
}

/// A volume's record once free of the server.
fn released(mut v: Volume, at: u64) -> Volume {
    v.attachments.clear();
    v.status = VolumeStatus::Available;
    v.updated_at = at;
    v
}

/// A `compute.instance.<what>` notification about `s` (`old`: the server before the command);
/// the fields of `extra` (an object, or null) are added to or replace the payload's.
fn notify(
    tx: &WriteTransaction,
    what: &str,
    s: &Server,
    old: Option<&Server>,
    at: u64,
    extra: serde_json::Value,
) -> Result<(), StateError> {
    let mut payload = serde_json::json!({
        "instance_id": s.id, "display_name": s.name, "tenant_id": s.project_id, "user_id": s.user_id,
        "host": s.node, "availability_zone": s.availability_zone, "image_id": s.image_id,
        "flavor": {"flavorid": s.flavor.id, "name": s.flavor.name, "vcpus": s.flavor.vcpus,
                   "memory_mb": s.flavor.ram_mb, "root_gb": s.flavor.disk_gb},
        "state": s.vm_state.as_str(), "task_state": s.task_state.map(|t| t.as_str()),
        "power_state": s.power_state as u8,
        "old_state": old.map(|o| o.vm_state.as_str()), "old_task_state": old.and_then(|o| o.task_state.map(|t| t.as_str())),
    });
    if let Some(f) = &s.fault {
        payload["fault"] = serde_json::json!({"code": f.code, "message": f.message});
    }
    if let (Some(p), serde_json::Value::Object(e)) = (payload.as_object_mut(), extra) {
        p.extend(e);
    }
    let publisher = format!("compute.{}", if s.node.is_empty() { "api" } else { &s.node });
    super::events::emit(tx, &format!("compute.instance.{what}"), &publisher, at, payload)
}

fn set_status(tx: &WriteTransaction, mut v: Volume, to: VolumeStatus, at: u64) -> Result<(), StateError> {
    v.status = to;
    v.updated_at = at;
    store(tx, VOLUMES, &v.id.clone(), &v)
}

fn servers(tx: &WriteTransaction) -> Result<Vec<Server>, StateError> {
    let t = tx.open_table(SERVERS)?;
    let mut out = vec![];
    for row in t.iter()? {
        out.push(serde_json::from_slice(row?.1.value())?);
    }
    Ok(out)
}

/// A server's tags after a change: each checked, at most [`MAX_TAGS`], kept in the order first
/// given; refused while the server is being built (as Nova) or when a tag to remove is absent.
fn retag(s: &Server, replace: Option<&[String]>, add: &[String], remove: &[String]) -> Result<Vec<String>, Refusal> {
    if s.vm_state == VmState::Building {
        return Err(Refusal::Conflicts(format!(
            "Cannot 'update tags' instance {} while it is in vm_state building",
            s.id
        )));
    }
    let mut tags = replace.map_or_else(|| s.tags.clone(), <[String]>::to_vec);
    for t in remove {
        let at = tags.iter().position(|x| x == t).ok_or_else(|| not_found(Kind::Tag, t))?;
        tags.remove(at);
    }
    tags.extend(add.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    if let Some(bad) = tags.iter().find_map(|t| check_tag(t).err()) {
        return Err(Refusal::Invalid(bad.to_string()));
    }
    if tags.len() > MAX_TAGS {
        return Err(Refusal::Invalid(format!("The number of tags exceeded the per-server limit {MAX_TAGS}")));
    }
    Ok(tags)
}

pub(super) fn apply(tx: &WriteTransaction, cmd: &ComputeCommand) -> Result<Outcome, StateError> {
    match cmd {
        ComputeCommand::SeedFlavors(flavors) => {
            if tx.open_table(CLOUD)?.get(FLAVORS_SEEDED)?.is_some() {
                return Ok(Ok(()));
            }
            tx.open_table(CLOUD)?.insert(FLAVORS_SEEDED, "1")?;
            for f in flavors {
                // An operator's flavor of the same id or name wins.
                let _ = create(tx, FLAVORS, FLAVOR_NAMES, Kind::Flavor, &f.id, &f.name, f)?;
            }
            Ok(Ok(()))
        }
        ComputeCommand::CreateFlavor(f) => create(tx, FLAVORS, FLAVOR_NAMES, Kind::Flavor, &f.id, &f.name, f),
        ComputeCommand::SetFlavorExtraSpecs { id, set, unset } => {
            let Some(mut f) = load::<Flavor>(tx, FLAVORS, id)? else { return Ok(Err(not_found(Kind::Flavor, id))) };
            for (k, v) in set {
                if let Err(e) = check_extra_spec(k, v) {
                    return Ok(Err(Refusal::Invalid(e.to_string())));
                }
                f.extra_specs.insert(k.clone(), v.clone());
            }
            for k in unset {
                if f.extra_specs.remove(k).is_none() {
                    return Ok(Err(Refusal::NotFound { kind: Kind::Flavor, id: format!("{id} extra spec {k}") }));
                }
            }
            store(tx, FLAVORS, id, &f)?;
            Ok(Ok(()))
        }
        ComputeCommand::SetFlavorDescription { id, description } => {
            let Some(mut f) = load::<Flavor>(tx, FLAVORS, id)? else { return Ok(Err(not_found(Kind::Flavor, id))) };
            f.description = description.clone();
            store(tx, FLAVORS, id, &f)?;
            Ok(Ok(()))
        }
        ComputeCommand::SetFlavorAccess { id, project, add } => {
            let Some(mut f) = load::<Flavor>(tx, FLAVORS, id)? else { return Ok(Err(not_found(Kind::Flavor, id))) };
            if f.is_public {
                return Ok(Err(Refusal::Conflicts(format!("Can not add access to a public flavor {id}."))));
            }
            let has = f.projects.contains(project);
            match (add, has) {
                (true, true) => {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "Flavor access already exists for flavor {id} and project {project} combination."
                    ))))
                }
                (false, false) => {
                    return Ok(Err(Refusal::NotFound {
                        kind: Kind::Flavor,
                        id: format!("{id} access for project {project}"),
                    }))
                }
                (true, false) => f.projects.push(project.clone()),
                (false, true) => f.projects.retain(|p| p != project),
            }
            store(tx, FLAVORS, id, &f)?;
            Ok(Ok(()))
        }
        ComputeCommand::DeleteFlavor { id } => {
            let Some(f) = load::<Flavor>(tx, FLAVORS, id)? else { return Ok(Err(not_found(Kind::Flavor, id))) };
            tx.open_table(FLAVORS)?.remove(id.as_str())?;
            tx.open_table(FLAVOR_NAMES)?.remove(f.name.as_str())?;
            Ok(Ok(()))
        }
        ComputeCommand::CreateKeypair(k) => {
            let key = format!("{}\0{}", k.user_id, k.name);
            if load::<crate::model::compute::Keypair>(tx, KEYPAIRS, &key)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Keypair, name: k.name.clone() }));
            }
            store(tx, KEYPAIRS, &key, k)?;
            Ok(Ok(()))
        }
        ComputeCommand::DeleteKeypair { user_id, name } => {
            if tx.open_table(KEYPAIRS)?.remove(format!("{user_id}\0{name}").as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Keypair, name)));
            }
            Ok(Ok(()))
        }
        ComputeCommand::ReportNode(inv) => {
            store(tx, NODES, &inv.node, inv)?;
            Ok(Ok(()))
        }
        ComputeCommand::CreateServer { server, quota } => {
            if load::<Server>(tx, SERVERS, &server.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Server, name: server.id.clone() }));
            }
            let all = servers(tx)?;
            let mine: Vec<&Server> = all.iter().filter(|s| s.project_id == server.project_id).collect();
            let used = mine.iter().fold(Resources::default(), |a, s| a.plus(s.resources));
            if let Some(why) = quota.exceeded(mine.len() as u64, used, server.resources) {
                return Ok(Err(Refusal::OverQuota(why)));
            }
            if !server.node.is_empty() {
                let Some(node) = load::<Inventory>(tx, NODES, &server.node)? else {
                    return Ok(Err(Refusal::Exhausted(format!(
                        "No valid host was found. Node {} is unknown.",
                        server.node
                    ))));
                };
                let on_node = usage(&all).remove(&server.node).unwrap_or_default();
                if let Some(why) = node.misfit(on_node, server.resources) {
                    return Ok(Err(Refusal::Exhausted(format!("No valid host was found. {why}"))));
                }
            }
            // A boot volume is reserved with the claim (checked before anything is written).
            let mut reserved = vec![];
            for sv in &server.volumes {
                match reservable(tx, server, &sv.volume_id)? {
                    Ok(v) => reserved.push(v),
                    Err(r) => return Ok(Err(r)),
                }
            }
            for v in reserved {
                set_status(tx, v, VolumeStatus::Attaching, server.updated_at)?;
            }
            let what = if server.vm_state == VmState::Error { "create.error" } else { "create.start" };
            notify(tx, what, server, None, server.created_at, serde_json::Value::Null)?;
            store(tx, SERVERS, &server.id, server)?;
            Ok(Ok(()))
        }
        ComputeCommand::SetServerState { id, if_task, vm_state, task_state, power_state, fault, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, id)? else { return Ok(Err(not_found(Kind::Server, id))) };
            let old = s.clone();
            if let Some(expected) = if_task {
                if s.task_state != *expected {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "Cannot change server {id} while its task is {}.",
                        s.task_state.map_or("none", |t| t.as_str())
                    ))));
                }
            }
            if s.vm_state == VmState::Building && *vm_state == VmState::Active {
                s.launched_at = Some(*updated_at);
                // The config drive has it now; the state keeps no copy.
                s.admin_pass = None;
                // The boot volume is in use from the first start.
                for sv in s.volumes.iter_mut().filter(|sv| sv.boot) {
                    sv.state = AttachState::Attached;
                }
                for sv in s.volumes.iter().filter(|sv| sv.boot) {
                    if let Some(v) = load::<Volume>(tx, VOLUMES, &sv.volume_id)? {
                        store(tx, VOLUMES, &sv.volume_id, &attached(v, &s, sv, *updated_at))?;
                    }
                }
            }
            s.vm_state = *vm_state;
            s.task_state = *task_state;
            s.power_state = *power_state;
            if fault.is_some() {
                s.fault = fault.clone();
            }
            s.updated_at = *updated_at;
            store(tx, SERVERS, id, &s)?;
            // A task begins (`<action>.start`), ends (`.end`, `.error` with a fault), or the
            // guest's state changed by itself (`update`).
            let what = match (old.task_state, s.task_state) {
                (_, Some(t)) if old.task_state != Some(t) => Some(format!("{}.start", t.action())),
                (Some(t), None) if fault.is_some() => Some(format!("{}.error", t.action())),
                (Some(t), None) => Some(format!("{}.end", t.action())),
                (None, None) if (old.vm_state, old.power_state) != (s.vm_state, s.power_state) => {
                    Some("update".to_owned())
                }
                _ => None,
            };
            if let Some(what) = what {
                notify(tx, &what, &s, Some(&old), *updated_at, serde_json::Value::Null)?;
            }
            Ok(Ok(()))
        }
        ComputeCommand::DeleteServer { id } => {
            let Some(s) = load::<Server>(tx, SERVERS, id)? else { return Ok(Err(not_found(Kind::Server, id))) };
            tx.open_table(SERVERS)?.remove(id.as_str())?;
            for sv in &s.volumes {
                if let Some(v) = load::<Volume>(tx, VOLUMES, &sv.volume_id)? {
                    store(tx, VOLUMES, &sv.volume_id, &released(v, s.updated_at))?;
                }
            }
            // Nova's vm_state of a removed server is `deleted`.
            let gone = Server { task_state: None, ..s.clone() };
            notify(tx, "delete.end", &gone, Some(&s), s.updated_at, serde_json::json!({"state": "deleted"}))?;
            Ok(Ok(()))
        }
        ComputeCommand::UpdateServer { id, name, access_ipv4, access_ipv6, description, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, id)? else { return Ok(Err(not_found(Kind::Server, id))) };
            let old = s.clone();
            s.name = name.clone();
            s.description = description.clone();
            s.access_ipv4 = access_ipv4.or(s.access_ipv4);
            s.access_ipv6 = access_ipv6.or(s.access_ipv6);
            s.updated_at = *updated_at;
            store(tx, SERVERS, id, &s)?;
            notify(tx, "update", &s, Some(&old), *updated_at, serde_json::Value::Null)?;
            Ok(Ok(()))
        }
        ComputeCommand::SetServerTags { id, replace, add, remove, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, id)? else { return Ok(Err(not_found(Kind::Server, id))) };
            match retag(&s, replace.as_deref(), add, remove) {
                Ok(tags) => s.tags = tags,
                Err(r) => return Ok(Err(r)),
            }
            s.updated_at = *updated_at;
            store(tx, SERVERS, id, &s)?;
            Ok(Ok(()))
        }
        ComputeCommand::AttachServerVolume { server_id, volume, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, server_id)? else {
                return Ok(Err(not_found(Kind::Server, server_id)));
            };
            if !matches!(s.vm_state, VmState::Active | VmState::Stopped) || s.task_state.is_some() {
                return Ok(Err(Refusal::Conflicts(format!(
                    "Cannot 'attach_volume' instance {server_id} while it is in vm_state {} and task_state {}",
                    s.vm_state.as_str(),
                    s.task_state.map_or("None", |t| t.as_str())
                ))));
            }
            if s.volumes.iter().any(|v| v.volume_id == volume.volume_id || v.device == volume.device) {
                return Ok(Err(Refusal::Conflicts(format!(
                    "Volume {} or device {} is already attached to server {server_id}.",
                    volume.volume_id, volume.device
                ))));
            }
            let v = match reservable(tx, &s, &volume.volume_id)? {
                Ok(v) => v,
                Err(r) => return Ok(Err(r)),
            };
            set_status(tx, v, VolumeStatus::Attaching, *updated_at)?;
            s.volumes.push(ServerVolume { state: AttachState::Attaching, boot: false, ..volume.clone() });
            s.updated_at = *updated_at;
            store(tx, SERVERS, server_id, &s)?;
            notify(
                tx,
                "volume_attach.start",
                &s,
                None,
                *updated_at,
                serde_json::json!({"volume_id": volume.volume_id}),
            )?;
            Ok(Ok(()))
        }
        ComputeCommand::DetachServerVolume { server_id, volume_id, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, server_id)? else {
                return Ok(Err(not_found(Kind::Server, server_id)));
            };
            let Some(sv) = s.volumes.iter_mut().find(|v| v.volume_id == *volume_id) else {
                return Ok(Err(Refusal::NotFound {
                    kind: Kind::Volume,
                    id: format!("{volume_id} attachment to server {server_id}"),
                }));
            };
            if sv.boot {
                return Ok(Err(Refusal::Invalid("Can't detach root device volume".into())));
            }
            if sv.state != AttachState::Attached || s.task_state.is_some() {
                return Ok(Err(Refusal::Conflicts(format!(
                    "Volume {volume_id} of server {server_id} is busy (attaching or detaching, or the server has a task)."
                ))));
            }
            sv.state = AttachState::Detaching;
            if let Some(v) = load::<Volume>(tx, VOLUMES, volume_id)? {
                set_status(tx, v, VolumeStatus::Detaching, *updated_at)?;
            }
            s.updated_at = *updated_at;
            store(tx, SERVERS, server_id, &s)?;
            notify(tx, "volume_detach.start", &s, None, *updated_at, serde_json::json!({"volume_id": volume_id}))?;
            Ok(Ok(()))
        }
        ComputeCommand::ServerVolumeDone { server_id, volume_id, error, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, server_id)? else {
                return Ok(Err(not_found(Kind::Server, server_id)));
            };
            let Some(i) = s.volumes.iter().position(|v| v.volume_id == *volume_id && !v.boot) else {
                return Ok(Err(not_found(Kind::Volume, volume_id)));
            };
            let Some(v) = load::<Volume>(tx, VOLUMES, volume_id)? else {
                return Ok(Err(not_found(Kind::Volume, volume_id)));
            };
            let sv = s.volumes[i].clone();
            // Attached, or a failed detach: the volume stays with the server.
            let keep = match (sv.state, error.is_none()) {
                (AttachState::Attaching, true) | (AttachState::Detaching, false) => true,
                (AttachState::Attaching, false) | (AttachState::Detaching, true) => false,
                (AttachState::Attached, _) => {
                    return Ok(Err(Refusal::Conflicts(format!(
                        "Volume {volume_id} is not being attached or detached."
                    ))))
                }
            };
            if keep {
                s.volumes[i].state = AttachState::Attached;
                store(tx, VOLUMES, volume_id, &attached(v, &s, &sv, *updated_at))?;
            } else {
                s.volumes.remove(i);
                store(tx, VOLUMES, volume_id, &released(v, *updated_at))?;
            }
            s.updated_at = *updated_at;
            store(tx, SERVERS, server_id, &s)?;
            let op = if sv.state == AttachState::Attaching { "volume_attach" } else { "volume_detach" };
            let end = if error.is_none() { "end" } else { "error" };
            notify(tx, &format!("{op}.{end}"), &s, None, *updated_at, serde_json::json!({"volume_id": volume_id}))?;
            Ok(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::run;
    use super::*;
    use crate::model::compute::{default_flavors, ComputeQuota, PowerState, TaskState};
    use crate::state::Command;
    use crate::state::Store;

    #[test]
    fn tags_are_checked_limited_and_refused_while_building() {
        let f = default_flavors().remove(0);
        let mut s = server("s1", "p", "n", &f);
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(retag(&s, None, &t(&["a"]), &[]), Err(Refusal::Conflicts(_))), "building");
        s.vm_state = VmState::Active;
        s.tags = t(&["a", "b"]);
        assert_eq!(retag(&s, None, &t(&["c", "a"]), &t(&["b"])).unwrap(), t(&["a", "c"]));
        assert_eq!(retag(&s, Some(&t(&["x", "x"])), &[], &[]).unwrap(), t(&["x"]));
        assert!(matches!(retag(&s, None, &[], &t(&["zz"])), Err(Refusal::NotFound { kind: Kind::Tag, .. })));
        assert!(matches!(retag(&s, None, &t(&["a/b"]), &[]), Err(Refusal::Invalid(_))));
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(matches!(retag(&s, Some(&many), &[], &[]), Err(Refusal::Invalid(m)) if m.contains("limit 50")));
    }

    fn server(id: &str, project: &str, node: &str, flavor: &Flavor) -> Server {
        Server {
            id: id.into(),
            name: id.into(),
            project_id: project.into(),
            user_id: "u".into(),
            flavor: flavor.clone(),
            image_id: "i".into(),
            ports: vec![],
            volumes: vec![],
            node: node.into(),
            resources: Resources::of(flavor),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Spawning),
            power_state: PowerState::NoState,
            fault: None,
            key_name: None,
            user_data: None,
            admin_pass: Some("pw".into()),
            availability_zone: "nova".into(),
            metadata: Default::default(),
            access_ipv4: None,
            access_ipv6: None,
            reservation_id: String::new(),
            launch_index: 0,
            hostname: String::new(),
            description: None,
            tags: vec![],
            created_at: 0,
            updated_at: 0,
            launched_at: None,
        }
    }

    #[test]
    fn claims_never_overbook_and_quotas_hold() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let node = Inventory::for_test("n1", 1, 1024);
        assert_eq!(run(&s, Command::Compute(ComputeCommand::ReportNode(node))), Ok(()));
        let small = &default_flavors()[0]; // m1.tiny: 1 vCPU, 512 MiB, 1 GiB
        let q = ComputeQuota::default();
        let create = |id: &str, node: &str, quota| {
            Command::Compute(ComputeCommand::CreateServer { server: Box::new(server(id, "p", node, small)), quota })
        };
        // Two creates chose n1 from the same view; the log applies them in order: both fit (1024
        // MiB), a third does not, whoever proposed it.
        assert_eq!(run(&s, create("a", "n1", q)), Ok(()));
        assert_eq!(run(&s, create("b", "n1", q)), Ok(()));
        match run(&s, create("c", "n1", q)) {
            Err(Refusal::Exhausted(m)) => assert!(m.starts_with("No valid host was found. memory_mb: 1536"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A server without a node (no valid host at scheduling) is recorded as it is.
        assert_eq!(run(&s, create("d", "", q)), Ok(()));
        // Quota: one more instance than allowed is refused, whatever the node.
        let tight = ComputeQuota { instances: 3, ..q };
        match run(&s, create("e", "", tight)) {
            Err(Refusal::OverQuota(m)) => assert!(m.contains("instances: Requested 1, but already used 3 of 3"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A conditional transition: only from the expected task.
        let to_active = |if_task| {
            Command::Compute(ComputeCommand::SetServerState {
                id: "a".into(),
                if_task,
                vm_state: VmState::Active,
                task_state: None,
                power_state: PowerState::Running,
                fault: None,
                updated_at: 5,
            })
        };
        assert!(matches!(run(&s, to_active(Some(None))), Err(Refusal::Conflicts(_))));
        assert_eq!(s.view().unwrap().server("a").unwrap().unwrap().admin_pass.as_deref(), Some("pw"));
        assert_eq!(run(&s, to_active(Some(Some(TaskState::Spawning)))), Ok(()));
        let a = s.view().unwrap().server("a").unwrap().unwrap();
        assert_eq!((a.status(), a.launched_at), ("ACTIVE", Some(5)));
        assert_eq!(a.admin_pass, None, "the state keeps no admin password once the server is built");
        let deleting = Command::Compute(ComputeCommand::SetServerState {
            id: "a".into(),
            if_task: None,
            vm_state: VmState::Active,
            task_state: Some(TaskState::Deleting),
            power_state: PowerState::Running,
            fault: None,
            updated_at: 6,
        });
        assert_eq!(run(&s, deleting), Ok(()));
        let a = s.view().unwrap().server("a").unwrap().unwrap();
        assert_eq!(a.status(), "ACTIVE", "being deleted, a server keeps its status until it is gone");
        assert_eq!(run(&s, Command::Compute(ComputeCommand::DeleteServer { id: "b".into() })), Ok(()));
        assert_eq!(run(&s, create("c", "n1", q)), Ok(()), "room again");
    }

    fn put_volume(s: &Store, id: &str, node: &str) {
        let v = Volume {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            project_id: "p".into(),
            user_id: "u".into(),
            size: 1,
            status: VolumeStatus::Available,
            error: None,
            volume_type: "pool".into(),
            format: crate::model::storage::VolumeFormat::Qcow2,
            node: node.into(),
            image_id: None,
            source_volid: None,
            snapshot_id: None,
            attachments: vec![],
            metadata: Default::default(),
            bootable: None,
            image_metadata: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let tx = s.db().begin_write().unwrap();
        store(&tx, VOLUMES, id, &v).unwrap();
        tx.commit().unwrap();
    }

    fn sv(volume: &str, device: &str, boot: bool) -> ServerVolume {
        ServerVolume {
            volume_id: volume.into(),
            attachment_id: format!("att-{volume}"),
            device: device.into(),
            state: AttachState::Attaching,
            boot,
            delete_on_termination: false,
            tag: None,
        }
    }

    #[test]
    fn volumes_attach_detach_and_boot_with_their_servers() {
        use crate::model::compute::PowerState;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(run(&s, Command::Compute(ComputeCommand::ReportNode(Inventory::for_test("n1", 4, 8192)))), Ok(()));
        for (v, node) in [("boot", "n1"), ("data", "n1"), ("far", "n2")] {
            put_volume(&s, v, node);
        }
        let status = |id: &str| s.view().unwrap().volume(id).unwrap().unwrap().status;
        let q = ComputeQuota::default();
        let tiny = &default_flavors()[0];
        // Booting from a volume reserves it with the claim; ACTIVE puts it in use.
        let mut a = server("a", "p", "n1", tiny);
        a.volumes = vec![sv("boot", "/dev/vda", true)];
        assert_eq!(
            run(&s, Command::Compute(ComputeCommand::CreateServer { server: Box::new(a.clone()), quota: q })),
            Ok(())
        );
        assert_eq!(status("boot"), VolumeStatus::Attaching);
        let mut b = server("b", "p", "n1", tiny);
        b.volumes = vec![sv("boot", "/dev/vda", true)];
        assert!(
            matches!(
                run(&s, Command::Compute(ComputeCommand::CreateServer { server: Box::new(b), quota: q })),
                Err(Refusal::Invalid(_))
            ),
            "a volume boots one server"
        );
        assert_eq!(s.view().unwrap().server("b").unwrap(), None, "a refused create writes nothing");
        let active = Command::Compute(ComputeCommand::SetServerState {
            id: "a".into(),
            if_task: Some(Some(TaskState::Spawning)),
            vm_state: VmState::Active,
            task_state: None,
            power_state: PowerState::Running,
            fault: None,
            updated_at: 3,
        });
        assert_eq!(run(&s, active), Ok(()));
        let boot = s.view().unwrap().volume("boot").unwrap().unwrap();
        assert_eq!((boot.status, boot.attachments[0].device.as_str()), (VolumeStatus::InUse, "/dev/vda"));
        // Attach: reserved, then the node's outcome; a volume on another node is refused.
        let attach = |v: &str, dev: &str| {
            Command::Compute(ComputeCommand::AttachServerVolume {
                server_id: "a".into(),
                volume: sv(v, dev, false),
                updated_at: 4,
            })
        };
        assert!(matches!(run(&s, attach("far", "/dev/vdc")), Err(Refusal::Invalid(m)) if m.contains("node n2")));
        assert!(matches!(run(&s, attach("data", "/dev/vda")), Err(Refusal::Conflicts(_))), "device taken");
        assert_eq!(run(&s, attach("data", "/dev/vdc")), Ok(()));
        assert_eq!(status("data"), VolumeStatus::Attaching);
        let done = |error: Option<&str>| {
            Command::Compute(ComputeCommand::ServerVolumeDone {
                server_id: "a".into(),
                volume_id: "data".into(),
                error: error.map(str::to_owned),
                updated_at: 5,
            })
        };
        // A failed plug-in frees the volume; a retry succeeds.
        assert_eq!(run(&s, done(Some("no"))), Ok(()));
        assert_eq!(status("data"), VolumeStatus::Available);
        assert_eq!(run(&s, attach("data", "/dev/vdc")), Ok(()));
        assert_eq!(run(&s, done(None)), Ok(()));
        let data = s.view().unwrap().volume("data").unwrap().unwrap();
        assert_eq!((data.status, data.attachments[0].server_id.as_str()), (VolumeStatus::InUse, "a"));
        assert!(matches!(run(&s, done(None)), Err(Refusal::Conflicts(_))), "nothing in progress");
        // Detach: the root volume stays; a failed unplug keeps the volume attached.
        let detach = |v: &str| {
            Command::Compute(ComputeCommand::DetachServerVolume {
                server_id: "a".into(),
                volume_id: v.into(),
                updated_at: 6,
            })
        };
        assert!(matches!(run(&s, detach("boot")), Err(Refusal::Invalid(_))));
        assert_eq!(run(&s, detach("data")), Ok(()));
        assert_eq!(status("data"), VolumeStatus::Detaching);
        assert_eq!(run(&s, done(Some("the guest held on"))), Ok(()));
        assert_eq!(status("data"), VolumeStatus::InUse);
        assert_eq!(run(&s, detach("data")), Ok(()));
        assert_eq!(run(&s, done(None)), Ok(()));
        assert_eq!(status("data"), VolumeStatus::Available);
        // Deleting the server frees its boot volume.
        assert_eq!(run(&s, attach("data", "/dev/vdc")), Ok(()));
        assert_eq!(run(&s, Command::Compute(ComputeCommand::DeleteServer { id: "a".into() })), Ok(()));
        assert_eq!((status("boot"), status("data")), (VolumeStatus::Available, VolumeStatus::Available));
        assert!(s.view().unwrap().volume("boot").unwrap().unwrap().attachments.is_empty());
        // Each step went out as a notification: the refused commands wrote none.
        let events = s.view().unwrap().events_after(0, 100).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type.trim_start_matches("compute.instance.")).collect();
        assert_eq!(
            kinds,
            [
                "create.start",
                "create.end",
                "volume_attach.start",
                "volume_attach.error",
                "volume_attach.start",
                "volume_attach.end",
                "volume_detach.start",
                "volume_detach.error",
                "volume_detach.start",
                "volume_detach.end",
                "volume_attach.start",
                "delete.end",
            ]
        );
        assert_eq!(events[2].payload["volume_id"], "data");
        let last = &events[11].payload;
        assert_eq!((last["state"].as_str(), last["old_state"].as_str()), (Some("deleted"), Some("active")));
        assert_eq!(events[11].publisher_id, "compute.n1");
    }
}
