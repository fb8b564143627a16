//! Applying Nova's commands: flavors (names unique, seeded once), their extra specs and access
//! lists, keypairs per user, and the inventory each compute node reports.

use super::apply::{create, load, not_found, store};
use super::{
    Command, Kind, Outcome, Refusal, StateError, CLOUD, FLAVORS, FLAVORS_SEEDED, FLAVOR_NAMES, KEYPAIRS, NODES,
};
use crate::model::compute::{check_extra_spec, Flavor};
use redb::{ReadableTable, WriteTransaction};

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
        _ => Err(StateError::Raft("not a compute command".into())),
    }
}
