//! Flavors: the defaults seeded once; listing as Nova does it; admin create, delete, extra
//! specs, description (2.55) and access to private flavors.

use super::*;
use crate::state::ComputeCommand;

impl Compute {
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
        self.propose(Command::Compute(ComputeCommand::CreateFlavor(f))).await.map_err(|e| match e {
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
        self.propose(Command::Compute(ComputeCommand::DeleteFlavor { id: f.id })).await
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
        self.propose(Command::Compute(ComputeCommand::SetFlavorExtraSpecs { id: f.id.clone(), set, unset })).await?;
        self.flavor(auth, &f.id)
    }

    /// Sets a flavor's description (2.55); admins only.
    pub async fn describe_flavor(&self, auth: &Auth, id: &str, description: Option<String>) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-manage:update")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::Compute(ComputeCommand::SetFlavorDescription { id: f.id.clone(), description })).await?;
        self.flavor(auth, &f.id)
    }

    pub async fn flavor_access(&self, auth: &Auth, id: &str, project: &str, add: bool) -> Result<Flavor> {
        admin_only(auth, "os_compute_api:os-flavor-access")?;
        let f = self.flavor(auth, id)?;
        self.propose(Command::Compute(ComputeCommand::SetFlavorAccess {
            id: f.id.clone(),
            project: project.into(),
            add,
        }))
        .await?;
        self.flavor(auth, &f.id)
    }
}
