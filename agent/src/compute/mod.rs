//! Nova's logic that needs no hypervisor: flavors (the defaults seeded once; admin create,
//! delete, extra specs, access to private flavors), keypairs (public keys checked and
//! fingerprinted as Nova does), and the compute nodes: each node with the compute role reports its
//! inventory (from the host probe) and a heartbeat into the state; hypervisors and services are
//! read from there, up when the heartbeat is recent.
//!
//! Limitations: servers, the scheduler and the libvirt reconciler come with the next steps;
//! keypairs must come with a public key (the client generates the pair, as the openstack client
//! does).

pub mod scheduler;

use crate::identity::{now, Auth};
use crate::model::compute::{default_flavors, Flavor, Inventory, Keypair};
use crate::state::raft::Replicated;
use crate::state::{Command, Refusal, StateError, View};
use std::collections::BTreeMap;
use std::time::Duration;

/// A node whose last heartbeat is older than this is down (Nova's `service_down_time`).
pub const DOWN_AFTER_SECS: u64 = 60;
/// How often a compute node reports.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for ComputeError {
    fn from(e: StateError) -> Self {
        ComputeError::Internal(Box::new(e))
    }
}

impl From<Refusal> for ComputeError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound { kind, id } => ComputeError::NotFound(format!("The {kind} {id} could not be found.")),
            Refusal::Conflict { kind, name } => ComputeError::Conflict(format!("The {kind} {name} already exists.")),
            Refusal::Conflicts(m) => ComputeError::Conflict(m),
            Refusal::Invalid(m) => ComputeError::BadRequest(m),
            r @ (Refusal::AlreadyBootstrapped | Refusal::Exhausted(_) | Refusal::OverQuota(_)) => {
                ComputeError::Internal(Box::new(r))
            }
        }
    }
}

type Result<T> = std::result::Result<T, ComputeError>;

/// A node's inventory and whether it is up.
pub type NodeUp = (Inventory, bool);

/// The compute service of this node.
pub struct Compute {
    state: Replicated,
    /// This node's inventory when it has the compute role.
    inventory: Option<Inventory>,
}

fn admin_only(auth: &Auth, what: &str) -> Result<()> {
    if auth.is_admin() {
        Ok(())
    } else {
        Err(ComputeError::Forbidden(format!("Policy doesn't allow {what} to be performed.")))
    }
}

impl Compute {
    pub fn new(state: Replicated, inventory: Option<Inventory>) -> Self {
        Self { state, inventory }
    }

    fn view(&self) -> Result<View> {
        Ok(self.state.store().view()?)
    }

    async fn propose(&self, cmd: Command) -> Result<()> {
        Ok(self.state.propose(cmd).await??)
    }

    /// First start of a cloud: the default flavors (a no-op ever after).
    pub async fn seed(&self) -> Result<()> {
        self.propose(Command::SeedFlavors(default_flavors())).await
    }

    /// Reports this node's inventory with a fresh heartbeat, every [`HEARTBEAT`].
    pub async fn heartbeat_loop(self: std::sync::Arc<Self>) {
        let Some(inv) = self.inventory.clone() else { return };
        loop {
            let report = Inventory { heartbeat_at: now(), ..inv.clone() };
            if let Err(e) = self.propose(Command::ReportNode(report)).await {
                log::warn!("compute heartbeat: {}", crate::error_chain(&e));
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    // ---- flavors

    /// Flavors as Nova lists them. An admin gets the public (`is_public` true), private (false) or
    /// all (None) flavors; anyone else the public ones and the private ones their project was
    /// given (only those for `is_public` false).
    pub fn flavors(&self, auth: &Auth, is_public: Option<bool>) -> Result<Vec<Flavor>> {
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let mut all: Vec<Flavor> = self
            .view()?
            .flavors()?
            .into_iter()
            .filter(|f| match (auth.is_admin(), is_public) {
                (true, Some(p)) => f.is_public == p,
                (true, None) => true,
                (false, Some(false)) => !f.is_public && f.usable_by(project),
                (false, _) => f.usable_by(project),
            })
            .collect();
        // Nova orders by flavorid-independent size: RAM, then id.
        all.sort_by(|a, b| (a.ram_mb, &a.id).cmp(&(b.ram_mb, &b.id)));
        Ok(all)
    }

    /// A flavor by id (the name also works, as clients fall back to it).
    pub fn flavor(&self, auth: &Auth, id: &str) -> Result<Flavor> {
        let v = self.view()?;
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let f = match v.flavor(id)? {
            Some(f) => Some(f),
            None => v.flavor_by_name(id)?,
        };
        f.filter(|f| auth.is_admin() || f.usable_by(project))
            .ok_or_else(|| ComputeError::NotFound(format!("Flavor {id} could not be found.")))
    }

    pub async fn create_flavor(&self, auth: &Auth, mut f: Flavor) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-manage:create")?;
        if f.id.is_empty() {
            f.id = uuid::Uuid::new_v4().to_string();
        }
        f.validate().map_err(|e| ComputeError::BadRequest(e.to_string()))?;
        let id = f.id.clone();
        self.propose(Command::CreateFlavor(f)).await.map_err(|e| match e {
            ComputeError::Conflict(_) => {
                ComputeError::Conflict(format!("Flavor with ID {id} or its name already exists."))
            }
            e => e,
        })?;
        self.flavor(auth, &id)
    }

    pub async fn delete_flavor(&self, auth: &Auth, id: &str) -> Result<()> {
        admin_only(auth, "os_compute_api:os-flavor-manage:delete")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::DeleteFlavor { id: f.id }).await
    }

    pub async fn set_extra_specs(
        &self,
        auth: &Auth,
        id: &str,
        set: BTreeMap<String, String>,
        unset: Vec<String>,
    ) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-extra-specs:update")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::SetFlavorExtraSpecs { id: f.id.clone(), set, unset }).await?;
        self.flavor(auth, &f.id)
    }

    pub async fn flavor_access(&self, auth: &Auth, id: &str, project: &str, add: bool) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-access")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::SetFlavorAccess { id: f.id.clone(), project: project.into(), add }).await?;
        self.flavor(auth, &f.id)
    }

    // ---- keypairs

    pub fn keypairs(&self, auth: &Auth) -> Result<Vec<Keypair>> {
        let mut k = self.view()?.keypairs(&auth.user.id)?;
        k.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(k)
    }

    pub fn keypair(&self, auth: &Auth, name: &str) -> Result<Keypair> {
        self.view()?
            .keypair(&auth.user.id, name)?
            .ok_or_else(|| ComputeError::NotFound(format!("Keypair {name} not found for user {}", auth.user.id)))
    }

    pub async fn create_keypair(&self, auth: &Auth, name: &str, public_key: &str) -> Result<Keypair> {
        let bad = |m: String| ComputeError::BadRequest(m);
        if name.trim().is_empty()
            || name.chars().count() > 255
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_. @".contains(c))
        {
            return Err(bad(format!(
                "Keypair data is invalid: Keypair name {name:?} must be 1 to 255 letters, digits, '-', '_', '.', '@' or spaces"
            )));
        }
        let fingerprint = fingerprint(public_key).map_err(|e| bad(format!("Keypair data is invalid: {e}")))?;
        let k = Keypair {
            name: name.into(),
            user_id: auth.user.id.clone(),
            public_key: public_key.trim().into(),
            fingerprint,
            kind: "ssh".into(),
            created_at: now(),
        };
        self.propose(Command::CreateKeypair(k.clone())).await.map_err(|e| match e {
            ComputeError::Conflict(_) => ComputeError::Conflict(format!("Key pair '{name}' already exists.")),
            e => e,
        })?;
        Ok(k)
    }

    pub async fn delete_keypair(&self, auth: &Auth, name: &str) -> Result<()> {
        self.keypair(auth, name)?;
        self.propose(Command::DeleteKeypair { user_id: auth.user.id.clone(), name: name.into() }).await
    }

    // ---- nodes

    /// Every node with whether its heartbeat is recent.
    fn nodes_up(&self) -> Result<Vec<NodeUp>> {
        let t = now();
        Ok(self
            .view()?
            .nodes()?
            .into_iter()
            .map(|i| {
                let up = t.saturating_sub(i.heartbeat_at) <= DOWN_AFTER_SECS;
                (i, up)
            })
            .collect())
    }

    /// Every compute node, ordered by name, with whether it is up.
    pub fn nodes(&self, auth: &Auth) -> Result<Vec<NodeUp>> {
        admin_only(auth, "os_compute_api:os-hypervisors:list")?;
        let mut n = self.nodes_up()?;
        n.sort_by(|a, b| a.0.node.cmp(&b.0.node));
        Ok(n)
    }

    /// The availability zones that have nodes.
    pub fn zones(&self) -> Result<Vec<(String, Vec<NodeUp>)>> {
        let mut zones: BTreeMap<String, Vec<NodeUp>> = BTreeMap::new();
        for (i, up) in self.nodes_up()? {
            zones.entry(i.availability_zone.clone()).or_default().push((i, up));
        }
        Ok(zones.into_iter().collect())
    }
}

/// An OpenSSH public key line's MD5 fingerprint (`aa:bb:…`), after checking that it is one.
pub fn fingerprint(line: &str) -> std::result::Result<String, String> {
    use base64::Engine;
    use md5::Digest;
    let mut words = line.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Err("a public key is `<type> <base64 key> [comment]`".into());
    };
    const KINDS: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    if !KINDS.contains(&kind) {
        return Err(format!("key type {kind} is not one of {}", KINDS.join(", ")));
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(blob).map_err(|_| "the key is not base64".to_owned())?;
    // The blob starts with its own type, length-prefixed.
    let named = raw
        .get(..4)
        .and_then(|l| usize::try_from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok())
        .and_then(|n| raw.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!("the key data is not a {kind} key"));
    }
    let digest = md5::Md5::digest(&raw);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_checked_and_fingerprinted() {
        // ssh-keygen -t ed25519 output (a throwaway key) and its `ssh-keygen -l -E md5` fingerprint.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt test@cairn";
        let fp = fingerprint(key).unwrap();
        assert_eq!(fp, "90:7f:07:4a:ef:44:01:7f:49:0b:f1:23:04:c7:91:04");
        assert_eq!(fp, fingerprint(key.trim_end_matches(" test@cairn")).unwrap(), "the comment does not count");
        assert!(fingerprint("ssh-ed25519").is_err());
        assert!(fingerprint("ssh-dss AAAAB3NzaC1kc3MAAACBAP").unwrap_err().contains("not one of"));
        assert!(fingerprint("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIP8ngWaatOlvnNJz56bSKs+c1AgP3g+VIzsiKCE+BAjt")
            .unwrap_err()
            .contains("not a ssh-rsa key"));
        assert!(fingerprint("ssh-ed25519 !!!").is_err());
    }
}
