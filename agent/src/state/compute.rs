//! Applying Nova's commands: flavors (names unique, seeded once), their extra specs and access
//! lists, keypairs per user, the inventory each compute node reports, and servers: a create
//! claims its node's resources here, in log order, so racing creates cannot overbook a node.

use super::apply::{create, load, not_found, store};
use super::{
    Command, Kind, Outcome, Refusal, StateError, CLOUD, FLAVORS, FLAVORS_SEEDED, FLAVOR_NAMES, KEYPAIRS, NODES, SERVERS,
};
use crate::model::compute::{check_extra_spec, usage, Flavor, Inventory, Resources, Server, VmState};
use redb::{ReadableTable, WriteTransaction};

fn servers(tx: &WriteTransaction) -> Result<Vec<Server>, StateError> {
    let t = tx.open_table(SERVERS)?;
    let mut out = vec![];
    for row in t.iter()? {
        out.push(serde_json::from_slice(row?.1.value())?);
    }
    Ok(out)
}

pub(super) fn apply(tx: &WriteTransaction, cmd: &Command) -> Result<Outcome, StateError> {
    match cmd {
        Command::SeedFlavors(flavors) => {
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
        Command::CreateFlavor(f) => create(tx, FLAVORS, FLAVOR_NAMES, Kind::Flavor, &f.id, &f.name, f),
        Command::SetFlavorExtraSpecs { id, set, unset } => {
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
        Command::SetFlavorAccess { id, project, add } => {
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
        Command::DeleteFlavor { id } => {
            let Some(f) = load::<Flavor>(tx, FLAVORS, id)? else { return Ok(Err(not_found(Kind::Flavor, id))) };
            tx.open_table(FLAVORS)?.remove(id.as_str())?;
            tx.open_table(FLAVOR_NAMES)?.remove(f.name.as_str())?;
            Ok(Ok(()))
        }
        Command::CreateKeypair(k) => {
            let key = format!("{}\0{}", k.user_id, k.name);
            if load::<crate::model::compute::Keypair>(tx, KEYPAIRS, &key)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Keypair, name: k.name.clone() }));
            }
            store(tx, KEYPAIRS, &key, k)?;
            Ok(Ok(()))
        }
        Command::DeleteKeypair { user_id, name } => {
            if tx.open_table(KEYPAIRS)?.remove(format!("{user_id}\0{name}").as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Keypair, name)));
            }
            Ok(Ok(()))
        }
        Command::ReportNode(inv) => {
            store(tx, NODES, &inv.node, inv)?;
            Ok(Ok(()))
        }
        Command::CreateServer { server, quota } => {
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
            store(tx, SERVERS, &server.id, server)?;
            Ok(Ok(()))
        }
        Command::SetServerState { id, if_task, vm_state, task_state, power_state, fault, updated_at } => {
            let Some(mut s) = load::<Server>(tx, SERVERS, id)? else { return Ok(Err(not_found(Kind::Server, id))) };
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
            }
            s.vm_state = *vm_state;
            s.task_state = *task_state;
            s.power_state = *power_state;
            if fault.is_some() {
                s.fault = fault.clone();
            }
            s.updated_at = *updated_at;
            store(tx, SERVERS, id, &s)?;
            Ok(Ok(()))
        }
        Command::DeleteServer { id } => {
            if tx.open_table(SERVERS)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Server, id)));
            }
            Ok(Ok(()))
        }
        _ => Err(StateError::Raft("not a compute command".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compute::{default_flavors, ComputeQuota, PowerState, TaskState};
    use crate::state::Store;

    fn run(store: &Store, cmd: Command) -> Outcome {
        let tx = store.db().begin_write().unwrap();
        let out = super::super::apply::apply(&tx, &cmd).unwrap();
        tx.commit().unwrap();
        out
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
            node: node.into(),
            resources: Resources::of(flavor),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Spawning),
            power_state: PowerState::NoState,
            fault: None,
            key_name: None,
            user_data: None,
            availability_zone: "nova".into(),
            metadata: Default::default(),
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
        assert_eq!(run(&s, Command::ReportNode(node)), Ok(()));
        let small = &default_flavors()[0]; // m1.tiny: 1 vCPU, 512 MiB, 1 GiB
        let q = ComputeQuota::default();
        // Two creates chose n1 from the same view; the log applies them in order: both fit (1024
        // MiB), a third does not, whoever proposed it.
        assert_eq!(run(&s, Command::CreateServer { server: server("a", "p", "n1", small), quota: q }), Ok(()));
        assert_eq!(run(&s, Command::CreateServer { server: server("b", "p", "n1", small), quota: q }), Ok(()));
        match run(&s, Command::CreateServer { server: server("c", "p", "n1", small), quota: q }) {
            Err(Refusal::Exhausted(m)) => assert!(m.starts_with("No valid host was found. memory_mb: 1536"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A server without a node (no valid host at scheduling) is recorded as it is.
        assert_eq!(run(&s, Command::CreateServer { server: server("d", "p", "", small), quota: q }), Ok(()));
        // Quota: one more instance than allowed is refused, whatever the node.
        let tight = ComputeQuota { instances: 3, ..q };
        match run(&s, Command::CreateServer { server: server("e", "p", "", small), quota: tight }) {
            Err(Refusal::OverQuota(m)) => assert!(m.contains("instances: Requested 1, but already used 3 of 3"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A conditional transition: only from the expected task.
        let to_active = |if_task| Command::SetServerState {
            id: "a".into(),
            if_task,
            vm_state: VmState::Active,
            task_state: None,
            power_state: PowerState::Running,
            fault: None,
            updated_at: 5,
        };
        assert!(matches!(run(&s, to_active(Some(None))), Err(Refusal::Conflicts(_))));
        assert_eq!(run(&s, to_active(Some(Some(TaskState::Spawning)))), Ok(()));
        let a = s.view().unwrap().server("a").unwrap().unwrap();
        assert_eq!((a.status(), a.launched_at), ("ACTIVE", Some(5)));
        let deleting = Command::SetServerState {
            id: "a".into(),
            if_task: None,
            vm_state: VmState::Active,
            task_state: Some(TaskState::Deleting),
            power_state: PowerState::Running,
            fault: None,
            updated_at: 6,
        };
        assert_eq!(run(&s, deleting), Ok(()));
        let a = s.view().unwrap().server("a").unwrap().unwrap();
        assert_eq!(a.status(), "ACTIVE", "being deleted, a server keeps its status until it is gone");
        assert_eq!(run(&s, Command::DeleteServer { id: "b".into() }), Ok(()));
        assert_eq!(
            run(&s, Command::CreateServer { server: server("c", "p", "n1", small), quota: q }),
            Ok(()),
            "room again"
        );
    }
}
