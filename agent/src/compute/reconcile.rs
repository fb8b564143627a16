//! The node's side of servers: at every change of the state and every 10 s, [`plan`] picks
//! each of this node's servers' job from the view alone, and the jobs run here (spawn, delete,
//! power changes, volume plugs, and a sync of the guest's power state).

use super::*;
use crate::state::ComputeCommand;

impl Compute {
    /// Converges this node's servers with the state, at every change and every 10 s (which
    /// also notices guests that stopped by themselves).
    pub async fn reconcile_loop(self: Arc<Self>) {
        let Some(driver) = self.driver.clone() else { return };
        let mut changes = self.state.store().subscribe();
        loop {
            if let Err(e) = self.reconcile(&driver).await {
                log::warn!("compute reconcile: {}", crate::error_chain(&e));
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            }
        }
    }

    async fn reconcile(self: &Arc<Self>, driver: &Arc<Driver>) -> Result<()> {
        let view = self.view()?;
        let images = self.images.clone();
        for (s, job) in plan(&view, self.node(), &|id| images.store_path(id))? {
            if !self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s.id.clone()) {
                continue;
            }
            let (this, driver) = (self.clone(), driver.clone());
            tokio::spawn(async move {
                let id = s.id.clone();
                if let Err(e) = this.run_job(&driver, s, job).await {
                    log::warn!("server {id}: {}", crate::error_chain(&e));
                }
                this.done(&id);
            });
        }
        Ok(())
    }

    fn done(&self, id: &str) {
        self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    async fn run_job(&self, driver: &Arc<Driver>, s: Server, job: Job) -> Result<()> {
        let d = driver.clone();
        let id = s.id.clone();
        let set = |vm_state, power_state, fault: Option<String>| {
            Command::Compute(ComputeCommand::SetServerState {
                id: s.id.clone(),
                if_task: Some(s.task_state),
                vm_state,
                task_state: None,
                power_state,
                fault: fault.map(|message| Fault { code: 500, message, created: now() }),
                updated_at: now(),
            })
        };
        // The hypervisor's work runs off the runtime; its error becomes the server's fault.
        let blocking = |f: Box<dyn FnOnce() -> std::result::Result<(), driver::DriverError> + Send>| async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| crate::error_chain(&e)))
        };
        match job {
            Job::Spawn(boot) => {
                let server = s.clone();
                // An image another node holds is fetched into this node's store first.
                let fetched = match &boot.root {
                    driver::Root::Image { .. } => self.images.local_copy(&s.image_id).await.map(drop),
                    driver::Root::Volume(_) => Ok(()),
                };
                let r = match fetched {
                    Ok(()) => blocking(Box::new(move || d.spawn(&server, &boot))).await,
                    Err(e) => Err(format!("fetching image {}: {}", s.image_id, crate::error_chain(&e))),
                };
                let cmd = match r {
                    Ok(()) => set(VmState::Active, PowerState::Running, None),
                    Err(e) => {
                        log::error!("server {id}: build failed: {e}");
                        set(VmState::Error, PowerState::NoState, Some(e))
                    }
                };
                self.propose(cmd).await
            }
            Job::Delete => {
                let r = blocking(Box::new(move || d.destroy(&id))).await;
                match r {
                    Ok(()) => self.forget(&s).await,
                    Err(e) => self.propose(set(VmState::Error, PowerState::NoState, Some(e))).await,
                }
            }
            Job::Power(p) => {
                let (done, failed) = p.outcomes();
                let r = blocking(Box::new(move || match p {
                    Power::Stop => d.stop(&id),
                    Power::Start | Power::Resume => d.start(&id),
                    Power::Reboot => d.stop(&id).and_then(|()| d.start(&id)),
                    Power::Pause => d.pause(&id),
                    Power::Unpause => d.unpause(&id),
                    Power::Suspend => d.suspend(&id),
                }))
                .await;
                self.propose(match r {
                    Ok(()) => set(done.0, done.1, None),
                    Err(e) => set(failed.0, failed.1, Some(e)),
                })
                .await
            }
            Job::Volume { id: volume_id, attach, v, device } => {
                let sid = s.id.clone();
                let r = blocking(Box::new(move || {
                    let disk = d.volume_disk(&v, &device)?;
                    if attach {
                        d.attach(&sid, &disk)
                    } else {
                        d.detach(&sid, &disk)
                    }
                }))
                .await;
                if let Err(e) = &r {
                    log::warn!("server {id}: volume {volume_id}: {e}");
                }
                let error = r.err();
                self.propose(Command::Compute(ComputeCommand::ServerVolumeDone {
                    server_id: s.id.clone(),
                    volume_id,
                    error,
                    updated_at: now(),
                }))
                .await
            }
            Job::Sync => {
                let state = tokio::task::spawn_blocking(move || d.state(&id))
                    .await
                    .map_err(|e| ComputeError::Internal(Box::new(e)))?
                    .map_err(|e| ComputeError::Internal(e.into()))?;
                let (vm, power) = match state {
                    Some(DomainState::Running) => (VmState::Active, PowerState::Running),
                    Some(DomainState::Paused) => (VmState::Active, PowerState::Paused),
                    Some(DomainState::Shutoff) => (VmState::Stopped, PowerState::Shutdown),
                    Some(DomainState::Crashed) => (VmState::Stopped, PowerState::Crashed),
                    None => (VmState::Error, PowerState::NoState),
                };
                if (vm, power) == (s.vm_state, s.power_state) {
                    return Ok(());
                }
                log::info!("server {}: the guest is now {power:?} (was {:?})", s.id, s.power_state);
                let fault = (vm == VmState::Error).then(|| "The domain disappeared from the hypervisor.".to_owned());
                self.propose(set(vm, power, fault)).await
            }
        }
    }
}

/// Each of `node`'s servers that has something to be done, with its job: chosen from the view
/// alone (`image_path` names where an image's data is kept), so the choice is tested without a
/// hypervisor. A server building waits here until each of its ports is bound to the node.
fn plan(view: &View, node: &str, image_path: &dyn Fn(&str) -> std::path::PathBuf) -> Result<Vec<(Server, Job)>> {
    let mut out = Vec::new();
    for s in view.servers()?.into_iter().filter(|s| s.node == node) {
        if let Some(job) = job_of(view, &s, image_path)? {
            out.push((s, job));
        }
    }
    Ok(out)
}

/// One server's job, if it has one.
fn job_of(view: &View, s: &Server, image_path: &dyn Fn(&str) -> std::path::PathBuf) -> Result<Option<Job>> {
    let job = match (s.vm_state, s.task_state) {
        (VmState::Building, Some(TaskState::Spawning)) => {
            let key = match &s.key_name {
                Some(k) => view.keypair(&s.user_id, k)?.map(|k| (k.name, k.public_key)),
                None => None,
            };
            let format = view.image(&s.image_id)?.and_then(|i| i.disk_format);
            let user_data = s.user_data.as_deref().and_then(|u| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(u).ok()
            });
            // Each port bound here, in order; until then, wait for the next change.
            let ports: Vec<_> = s.ports.iter().map(|p| view.port(&p.id)).collect::<std::result::Result<_, _>>()?;
            let nics: Option<Vec<driver::Nic>> = ports
                .into_iter()
                .zip(&s.ports)
                .map(|(p, sp)| {
                    p.filter(|p| p.host == s.node).map(|p| driver::Nic {
                        mac: p.mac_address.to_string(),
                        bridge: crate::net::reconcile::bridge_name(&p.network_id),
                        tap: format!("tap{}", p.id.chars().take(11).collect::<String>()),
                        tag: sp.tag.clone(),
                    })
                })
                .collect();
            let root = match s.volumes.iter().find(|v| v.boot) {
                Some(b) => driver::Root::Volume(volume_ref(view, &b.volume_id)?),
                None => driver::Root::Image {
                    path: image_path(&s.image_id),
                    format: format.unwrap_or(crate::model::image::DiskFormat::Raw),
                },
            };
            nics.map(|nics| {
                Job::Spawn(Boot {
                    root,
                    disk_bytes: Driver::disk_bytes(s.flavor.disk_gb),
                    key,
                    user_data,
                    admin_pass: s.admin_pass.clone(),
                    nics,
                })
            })
        }
        (_, Some(TaskState::Deleting)) => Some(Job::Delete),
        (_, Some(task)) => Power::of(task).map(Job::Power),
        (VmState::Active | VmState::Stopped, None) => {
            match s.volumes.iter().find(|v| !v.boot && v.state != AttachState::Attached) {
                Some(sv) => {
                    let v = volume_ref(view, &sv.volume_id)?;
                    Some(Job::Volume {
                        id: sv.volume_id.clone(),
                        attach: sv.state == AttachState::Attaching,
                        v,
                        device: sv.device.clone(),
                    })
                }
                None => Some(Job::Sync),
            }
        }
        _ => None,
    };
    Ok(job)
}

/// Where a volume's data is on this node.
fn volume_ref(view: &View, id: &str) -> Result<driver::VolumeRef> {
    let v = view.volume(id)?.ok_or_else(|| ComputeError::NotFound(format!("Volume {id} could not be found.")))?;
    Ok(driver::VolumeRef { pool: v.volume_type, name: v.id, format: v.format })
}

/// What the reconciler does for one server.
enum Job {
    Spawn(Boot),
    Delete,
    Power(Power),
    /// Plugs a volume in (`attach`) or out.
    Volume {
        id: String,
        attach: bool,
        v: driver::VolumeRef,
        device: String,
    },
    Sync,
}

/// The jobs that change a guest's power state.
#[derive(Clone, Copy, Debug)]
enum Power {
    Stop,
    Start,
    Reboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

impl Power {
    fn of(task: TaskState) -> Option<Power> {
        Some(match task {
            TaskState::PoweringOff => Power::Stop,
            TaskState::PoweringOn => Power::Start,
            TaskState::Rebooting | TaskState::RebootingHard => Power::Reboot,
            TaskState::Pausing => Power::Pause,
            TaskState::Unpausing => Power::Unpause,
            TaskState::Suspending => Power::Suspend,
            TaskState::Resuming => Power::Resume,
            TaskState::Spawning | TaskState::Deleting => return None,
        })
    }

    /// The (vm, power) states after success, and what a failure leaves.
    fn outcomes(self) -> ((VmState, PowerState), (VmState, PowerState)) {
        let running = (VmState::Active, PowerState::Running);
        let stopped = (VmState::Stopped, PowerState::Shutdown);
        let paused = (VmState::Paused, PowerState::Paused);
        let suspended = (VmState::Suspended, PowerState::Suspended);
        match self {
            Power::Stop => (stopped, running),
            Power::Start => (running, stopped),
            Power::Reboot => (running, (VmState::Error, PowerState::NoState)),
            Power::Pause => (paused, running),
            Power::Unpause => (running, paused),
            Power::Suspend => (suspended, running),
            Power::Resume => (running, suspended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compute::{default_flavors, ComputeQuota, Inventory};
    use crate::state::Command;
    use crate::state::Store;

    fn server(id: &str, node: &str, vm: &str, task: Option<&str>) -> Server {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project_id": "p", "user_id": "u", "flavor": default_flavors()[0],
            "image_id": "img", "node": node, "resources": {"vcpus": 1, "memory_mb": 512, "disk_gb": 1},
            "vm_state": vm, "task_state": task, "power_state": "NoState", "fault": null, "key_name": null,
            "availability_zone": "nova", "metadata": {}, "created_at": 0, "updated_at": 0, "launched_at": null}))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plan_picks_each_servers_job_from_the_view_alone() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        for n in ["n1", "n2"] {
            r.propose(Command::Compute(ComputeCommand::ReportNode(Inventory::for_test(n, 8, 8192))))
                .await
                .unwrap()
                .unwrap();
        }
        let quota = ComputeQuota { instances: 10, cores: 10, ram_mb: 1 << 20 };
        for s in [
            server("build", "n1", "building", Some("spawning")),
            server("gone", "n1", "active", Some("deleting")),
            server("stop", "n1", "active", Some("powering_off")),
            server("idle", "n1", "active", None),
            server("error", "n1", "error", None),
            server("other", "n2", "building", Some("spawning")),
        ] {
            r.propose(Command::Compute(ComputeCommand::CreateServer { server: Box::new(s), quota }))
                .await
                .unwrap()
                .unwrap();
        }
        let view = r.store().view().unwrap();
        let jobs = plan(&view, "n1", &|id| std::path::PathBuf::from(format!("/images/{id}"))).unwrap();
        let mut got: Vec<(String, String)> = jobs
            .iter()
            .map(|(s, j)| {
                let kind = match j {
                    Job::Spawn(b) => format!("spawn {:?}", b.root),
                    Job::Delete => "delete".into(),
                    Job::Power(p) => format!("power {p:?}"),
                    Job::Volume { id, .. } => format!("volume {id}"),
                    Job::Sync => "sync".into(),
                };
                (s.id.clone(), kind)
            })
            .collect();
        got.sort();
        let want = [
            ("build", "spawn Image { path: \"/images/img\", format: Raw }"),
            ("gone", "delete"),
            ("idle", "sync"),
            ("stop", "power Stop"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())), "n2's server and the failed one have none");
        r.shutdown().await;
    }
}
