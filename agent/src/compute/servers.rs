//! Servers: create (scheduled and recorded with their claim in one command), list, show,
//! update, metadata, tags, delete, actions, volumes, console and diagnostics (asked of the
//! server's node).

use super::*;
use crate::state::{ComputeCommand, MetadataCommand, NetworkCommand};

impl Compute {
    fn sees(auth: &Auth, s: &Server) -> bool {
        auth.is_admin() || auth.project.as_ref().is_some_and(|p| p.id == s.project_id)
    }

    /// The caller's servers, newest first (an admin may ask for every project's).
    pub fn servers(&self, auth: &Auth, all_tenants: bool) -> Result<Vec<Server>> {
        let mine = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        let mut v: Vec<Server> = self
            .view()?
            .servers()?
            .into_iter()
            .filter(|s| if all_tenants && auth.is_admin() { true } else { s.project_id == mine })
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(v)
    }

    pub fn server(&self, auth: &Auth, id: &str) -> Result<Server> {
        self.view()?
            .server(id)?
            .filter(|s| Self::sees(auth, s))
            .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))
    }

    /// Schedules and records `count` servers (BUILD) named as Nova names them (`name-1`, …
    /// when more than one); their node builds them. A server no node fits is recorded in ERROR
    /// with Nova's fault "No valid host was found". Returns the first.
    /// Creates `count` (min, max) servers as one request; returns the first and the request's
    /// reservation id.
    pub async fn create_servers(&self, auth: &Auth, new: NewServer, count: (u32, u32)) -> Result<(Server, String)> {
        let (min, max) = count;
        let reservation = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let nets = self.resolve_networks(auth, &new.networks)?;
        if let Some(h) = &new.host {
            if !self.nodes_up()?.iter().any(|(n, _)| n.node == *h) {
                return Err(ComputeError::BadRequest(format!("Compute host {h} could not be found.")));
            }
        }
        if max > 1 && (new.boot_volume.is_some() || nets.iter().any(|n| matches!(n, NetRequest::Port { .. }))) {
            return Err(ComputeError::BadRequest(
                "Unable to launch multiple instances with a single configured port ID or boot volume.".into(),
            ));
        }
        let project = auth.project.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        // Quota counts for the whole request first, as Nova does for min_count.
        if let (Ok(f), true) = (self.flavor(auth, &new.flavor_id), min > 1) {
            let (n, used) = self.project_usage(&project)?;
            let (want, others) = (Resources::of(&f), u64::from(min - 1));
            if let Some(why) = self.quota.exceeded(n + others, used.plus(Resources::of(&f).times(others)), want) {
                return Err(ComputeError::OverQuota(why));
            }
        }
        let mut made: Vec<Server> = vec![];
        for i in 1..=max {
            let mut one = new.clone();
            if max > 1 {
                one.name = format!("{}-{i}", new.name);
            }
            match self.create_server(auth, one, &nets, (&reservation, i - 1)).await {
                Ok(s) => made.push(s),
                // Past min_count, what the quota leaves is what the request gets.
                Err(ComputeError::OverQuota(_)) if i > min => break,
                // Short of min_count (another create took the quota meanwhile): none of them.
                Err(e) => {
                    for s in &made {
                        if let Err(d) = self.delete_server(auth, &s.id).await {
                            log::warn!("server {}: undoing a refused multi-create: {}", s.id, crate::error_chain(&d));
                        }
                    }
                    return Err(e);
                }
            }
        }
        let first = made.into_iter().next();
        let first = first.ok_or_else(|| ComputeError::BadRequest("max_count must be at least 1.".into()))?;
        Ok((first, reservation))
    }

    /// Nova's automatic network choice, resolved to the one network the project can use.
    fn resolve_networks(&self, auth: &Auth, nets: &Networks) -> Result<Vec<NetRequest>> {
        let explicit = match nets {
            Networks::List(l) => return Ok(l.clone()),
            Networks::Auto { explicit } => *explicit,
        };
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let usable: Vec<String> = self
            .network
            .list_networks(auth)
            .map_err(|e| ComputeError::Internal(Box::new(e)))?
            .into_iter()
            .filter(|n| n.project_id == project || n.shared)
            .map(|n| n.id)
            .collect();
        match usable.as_slice() {
            [] if explicit => Err(ComputeError::BadRequest(format!(
                "Unable to automatically allocate a network for project {project}: this cloud allocates no \
                 network topology; create a network or name one."
            ))),
            [] => Ok(vec![]),
            [one] => Ok(vec![NetRequest::Network { id: one.clone(), tag: None }]),
            _ => Err(ComputeError::Conflict(
                "Multiple possible networks found, use a Network ID to be more specific.".into(),
            )),
        }
    }

    /// Where a new server's root disk comes from: its image (checked against the flavor) or a
    /// volume of the caller's, available. Returns the node holding it, the boot volume, and the
    /// architecture the image asks for (its `architecture` or `hw_architecture` property).
    fn boot_source(&self, auth: &Auth, new: &NewServer, flavor: &Flavor) -> Result<BootSource> {
        let project = auth.project.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
        let view = self.view()?;
        if let Some(BootVolume { id: vid, delete_on_termination, tag }) = &new.boot_volume {
            let v = view
                .volume(vid)?
                .filter(|v| v.project_id == project || auth.is_admin())
                .ok_or_else(|| ComputeError::BadRequest(format!("Volume {vid} could not be found.")))?;
            if v.status != VolumeStatus::Available {
                return Err(ComputeError::BadRequest(format!(
                    "Invalid volume: volume {vid} status must be available, but current status is: {}",
                    v.status.as_str()
                )));
            }
            if !v.is_bootable() {
                return Err(ComputeError::BadRequest(format!(
                    "Block Device {vid} is not bootable (mark it with `openstack volume set --bootable`)."
                )));
            }
            let sv = ServerVolume {
                volume_id: v.id,
                attachment_id: uuid::Uuid::new_v4().to_string(),
                device: "/dev/vda".into(),
                state: AttachState::Attaching,
                boot: true,
                delete_on_termination: *delete_on_termination,
                tag: tag.clone(),
            };
            return Ok((Some(v.node), Some(sv), None));
        }
        let image = view
            .image(&new.image_id)?
            .filter(|i| {
                i.owner == project || auth.is_admin() || i.visibility != crate::model::image::Visibility::Private
            })
            .ok_or_else(|| ComputeError::BadRequest(format!("Image {} could not be found.", new.image_id)))?;
        if image.status != ImageStatus::Active {
            return Err(ComputeError::Conflict(format!("Image {} is not active.", image.id)));
        }
        let data =
            image.data.clone().ok_or_else(|| ComputeError::Conflict(format!("Image {} has no data.", image.id)))?;
        if flavor.disk_gb > 0 && data.virtual_size > flavor.disk_gb << 30 {
            return Err(ComputeError::BadRequest(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image is {} bytes.",
                flavor.disk_gb << 30,
                data.virtual_size
            )));
        }
        if flavor.ram_mb < image.min_ram || (flavor.disk_gb > 0 && flavor.disk_gb < image.min_disk) {
            return Err(ComputeError::BadRequest(
                "Flavor's memory or disk is too small for the requested image.".into(),
            ));
        }
        let arch = ["architecture", "hw_architecture"].iter().find_map(|k| image.properties.get(*k)).cloned();
        Ok((None, None, arch))
    }

    /// Schedules and records one server (BUILD); its node builds it.
    async fn create_server(
        &self,
        auth: &Auth,
        new: NewServer,
        nets: &[NetRequest],
        (reservation, launch_index): (&str, u32),
    ) -> Result<Server> {
        let project =
            auth.project.as_ref().map(|p| p.id.clone()).ok_or_else(|| {
                ComputeError::Forbidden("A project-scoped token is required to create servers.".into())
            })?;
        let flavor = self
            .flavor(auth, &new.flavor_id)
            .map_err(|_| ComputeError::BadRequest(format!("Flavor {} could not be found.", new.flavor_id)))?;
        let (holder, boot_volume, arch) = self.boot_source(auth, &new, &flavor)?;
        if let Some(k) = &new.key_name {
            self.view()?
                .keypair(&auth.user.id, k)?
                .ok_or_else(|| ComputeError::BadRequest("Invalid key_name provided.".into()))?;
        }
        let ports = self.make_ports(auth, nets).await?;
        let req = scheduler::Request {
            resources: Resources::of(&flavor),
            availability_zone: new.availability_zone.clone(),
            arch,
        };
        let t = now();
        let (hostname, host) = (crate::model::compute::hostname(&new.name), new.host.clone());
        let mut server = Server {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            project_id: project,
            user_id: auth.user.id.clone(),
            resources: Resources::of(&flavor),
            flavor,
            image_id: if boot_volume.is_some() { String::new() } else { new.image_id },
            ports,
            volumes: boot_volume.into_iter().collect(),
            node: String::new(),
            vm_state: VmState::Building,
            task_state: Some(TaskState::Spawning),
            power_state: PowerState::NoState,
            fault: None,
            key_name: new.key_name,
            user_data: new.user_data,
            admin_pass: Some(new.admin_pass),
            availability_zone: new.availability_zone.clone().unwrap_or_else(|| "nova".into()),
            metadata: new.metadata,
            access_ipv4: new.access_ipv4,
            access_ipv6: new.access_ipv6,
            reservation_id: reservation.to_owned(),
            launch_index,
            hostname,
            description: new.description,
            tags: new.tags,
            created_at: t,
            updated_at: t,
            launched_at: None,
        };
        // A boot volume lives on one node; an image goes wherever the server is built.
        let mut why = vec![];
        for _ in 0..3 {
            let view = self.view()?;
            let nodes: Vec<NodeUp> = self
                .nodes_up()?
                .into_iter()
                .filter(|(n, _)| [&holder, &host].iter().all(|h| h.as_ref().is_none_or(|h| n.node == *h)))
                .collect();
            let used = crate::model::compute::usage(&view.servers()?);
            match scheduler::select(&nodes, &used, &req, scheduler::Weigher::Spread) {
                Ok(node) => {
                    server.node = node.clone();
                    match self
                        .propose(Command::Compute(ComputeCommand::CreateServer {
                            server: Box::new(server.clone()),
                            quota: self.quota,
                        }))
                        .await
                    {
                        Ok(()) => {
                            self.bind_ports(&server).await?;
                            return Ok(server);
                        }
                        // Another create took the room first: schedule again on a fresh view.
                        Err(ComputeError::Conflict(m)) if m.starts_with("No valid host") => why = vec![m],
                        Err(e) => {
                            self.release_ports(&server.ports).await;
                            return Err(e);
                        }
                    }
                }
                Err(w) => {
                    why = w;
                    break;
                }
            }
        }
        let detail = match (why.is_empty(), &holder) {
            (false, _) => why.join("; "),
            (true, Some(h)) => format!("the boot volume's node {h} is not a compute node that is up"),
            (true, None) => "no compute node is up".to_owned(),
        };
        self.record_unplaced(server, &detail).await
    }

    /// Records a server no node could take: in ERROR with Nova's fault, its ports released.
    async fn record_unplaced(&self, mut server: Server, detail: &str) -> Result<Server> {
        server.node = String::new();
        server.vm_state = VmState::Error;
        server.task_state = None;
        server.volumes.clear();
        let message = format!("No valid host was found. {detail}");
        server.fault = Some(Fault { code: 500, message, created: server.created_at });
        self.release_ports(&server.ports).await;
        server.ports.clear();
        self.propose(Command::Compute(ComputeCommand::CreateServer {
            server: Box::new(server.clone()),
            quota: self.quota,
        }))
        .await?;
        Ok(server)
    }

    /// The ports of a new server: made on the requested networks, or the user's own (free).
    async fn make_ports(&self, auth: &Auth, nets: &[NetRequest]) -> Result<Vec<ServerPort>> {
        let mut made: Vec<ServerPort> = vec![];
        for n in nets {
            let r = match n {
                NetRequest::Network { id: net, tag } => self
                    .network
                    .create_port(
                        auth,
                        NewPort {
                            name: String::new(),
                            description: String::new(),
                            project_id: None,
                            network_id: net.clone(),
                            mac_address: None,
                            fixed_ips: None,
                            device_id: String::new(),
                            device_owner: String::new(),
                            admin_state_up: true,
                            host: String::new(),
                        },
                    )
                    .await
                    .map(|p| ServerPort { id: p.id, created: true, tag: tag.clone() }),
                NetRequest::Port { id, tag } => match self.network.get_port(auth, id) {
                    Ok(p) if p.device_id.is_empty() => Ok(ServerPort { id: p.id, created: false, tag: tag.clone() }),
                    Ok(_) => Err(NetError::Conflict(format!("Port {id} is still in use."))),
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok(p) => made.push(p),
                Err(e) => {
                    self.release_ports(&made).await;
                    return Err(match e {
                        NetError::NotFound { .. } | NetError::BadRequest(_) => ComputeError::BadRequest(e.to_string()),
                        NetError::Conflict(m) => ComputeError::Conflict(m),
                        NetError::Forbidden(m) => ComputeError::Forbidden(m),
                        e => ComputeError::Internal(Box::new(e)),
                    });
                }
            }
        }
        Ok(made)
    }

    /// Gives a scheduled server's ports to it and its node (Nova's binding, as the service).
    async fn bind_ports(&self, s: &Server) -> Result<()> {
        for p in &s.ports {
            let patch = PortPatch {
                device_id: Some(s.id.clone()),
                device_owner: Some("compute:nova".into()),
                host: Some(s.node.clone()),
                updated_at: now(),
                ..Default::default()
            };
            self.propose(Command::Network(NetworkCommand::UpdatePort { id: p.id.clone(), patch })).await?;
        }
        Ok(())
    }

    /// Deletes the ports Nova made and frees the user's own.
    pub(super) async fn release_ports(&self, ports: &[ServerPort]) {
        for p in ports {
            let cmd = if p.created {
                Command::Network(NetworkCommand::DeletePort { id: p.id.clone() })
            } else {
                let patch = PortPatch {
                    device_id: Some(String::new()),
                    device_owner: Some(String::new()),
                    host: Some(String::new()),
                    updated_at: now(),
                    ..Default::default()
                };
                Command::Network(NetworkCommand::UpdatePort { id: p.id.clone(), patch })
            };
            if let Err(e) = self.propose(cmd).await {
                log::warn!("port {}: {}", p.id, crate::error_chain(&e));
            }
        }
    }

    fn set_task(&self, s: &Server, task: TaskState) -> Command {
        Command::Compute(ComputeCommand::SetServerState {
            id: s.id.clone(),
            if_task: Some(None),
            vm_state: s.vm_state,
            task_state: Some(task),
            power_state: s.power_state,
            fault: None,
            updated_at: now(),
        })
    }

    /// A server's addresses: (network name, address, MAC) per fixed IP of its ports.
    pub fn addresses(&self, s: &Server) -> Result<Vec<(String, std::net::IpAddr, String)>> {
        let view = self.view()?;
        let mut out = vec![];
        for sp in &s.ports {
            let Some(p) = view.port(&sp.id)? else { continue };
            let net = view.network(&p.network_id)?.map_or_else(|| p.network_id.clone(), |n| n.name.clone());
            for f in &p.fixed_ips {
                out.push((net.clone(), f.ip_address, p.mac_address.to_string()));
            }
        }
        Ok(out)
    }

    /// Renames a server and sets its access addresses; what a change leaves out stays.
    pub async fn update_server(&self, auth: &Auth, id: &str, change: ServerChange) -> Result<Server> {
        let s = self.server(auth, id)?;
        let name = change.name.unwrap_or(s.name);
        check_server_name(&name).map_err(|e| ComputeError::BadRequest(e.to_string()))?;
        let description = change.description.unwrap_or(s.description);
        if description.as_ref().is_some_and(|d| d.chars().count() > 255) {
            return Err(ComputeError::BadRequest(
                "Invalid input for field/attribute description: at most 255 characters.".into(),
            ));
        }
        let cmd = Command::Compute(ComputeCommand::UpdateServer {
            id: s.id.clone(),
            name,
            description,
            access_ipv4: change.access_ipv4,
            access_ipv6: change.access_ipv6,
            updated_at: now(),
        });
        self.propose(cmd).await?;
        self.server(auth, id)
    }

    /// Changes a server's tags (Nova's `/servers/{id}/tags`, 2.26): all replaced when
    /// `replace`, then `remove`d and `add`ed. Returns the server.
    pub async fn set_server_tags(
        &self,
        auth: &Auth,
        id: &str,
        replace: Option<Vec<String>>,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<Server> {
        let s = self.server(auth, id)?;
        self.propose(Command::Compute(ComputeCommand::SetServerTags {
            id: s.id,
            replace,
            add,
            remove,
            updated_at: now(),
        }))
        .await?;
        self.server(auth, id)
    }

    /// Changes a server's metadata (Nova's `/servers/{id}/metadata`): cleared first when
    /// `replace`, then `remove`d keys (each must exist), then `set` ones; keys 1 to 255
    /// characters, values at most 255, at most [`METADATA_ITEMS`] in all (403 beyond, as Nova).
    pub async fn set_server_metadata(
        &self,
        auth: &Auth,
        id: &str,
        replace: bool,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<Server> {
        let s = self.server(auth, id)?;
        for (k, v) in &set {
            if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                return Err(ComputeError::BadRequest(format!(
                    "Invalid input for field/attribute metadata: {k:?} must be 1 to 255 characters and its value at most 255."
                )));
            }
        }
        let cmd = Command::Metadata(MetadataCommand::SetMetadata {
            of: MetadataOf::Server,
            id: s.id.clone(),
            change: MetadataChange { replace, set, remove, max_items: METADATA_ITEMS, if_match: None },
            updated_at: now(),
        });
        self.propose(cmd).await?;
        self.server(auth, id)
    }

    /// Deletes a server: its node tears it down (a server on no node goes at once).
    pub async fn delete_server(&self, auth: &Auth, id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        if s.node.is_empty() {
            self.release_ports(&s.ports).await;
            return self.propose(Command::Compute(ComputeCommand::DeleteServer { id: s.id })).await;
        }
        // Deleting wins over any task in progress.
        self.propose(Command::Compute(ComputeCommand::SetServerState {
            id: s.id.clone(),
            if_task: None,
            vm_state: s.vm_state,
            task_state: Some(TaskState::Deleting),
            power_state: s.power_state,
            fault: None,
            updated_at: now(),
        }))
        .await
    }

    pub async fn action(&self, auth: &Auth, id: &str, action: Action) -> Result<()> {
        let s = self.server(auth, id)?;
        let (from, task, name) = action.rule();
        if !from.contains(&s.vm_state) || s.task_state.is_some() {
            return Err(ComputeError::Conflict(format!(
                "Cannot '{name}' instance {id} while it is in vm_state {} and task_state {}",
                s.vm_state.as_str(),
                s.task_state.map_or("None", |t| t.as_str())
            )));
        }
        self.propose(self.set_task(&s, task)).await
    }

    /// Attaches a volume of the caller's to a server on the volume's node: reserved now (the
    /// volume `attaching`), plugged in by the node. Returns the attachment.
    pub async fn attach_volume(&self, auth: &Auth, id: &str, attach: VolumeAttach) -> Result<ServerVolume> {
        let VolumeAttach { volume_id, tag, delete_on_termination } = attach;
        let volume_id = volume_id.as_str();
        let s = self.server(auth, id)?;
        let v = self
            .view()?
            .volume(volume_id)?
            .filter(|v| auth.is_admin() || v.project_id == s.project_id)
            .ok_or_else(|| ComputeError::NotFound(format!("Volume {volume_id} could not be found.")))?;
        // An attached volume (here or elsewhere) is Nova's 400, as is any not available.
        if v.status != VolumeStatus::Available {
            return Err(ComputeError::BadRequest(format!(
                "Invalid volume: volume {volume_id} status must be available, but current status is: {}",
                v.status.as_str()
            )));
        }
        let device = s
            .next_device()
            .ok_or_else(|| ComputeError::BadRequest(format!("Server {id} has no free device name left.")))?;
        let sv = ServerVolume {
            volume_id: volume_id.into(),
            attachment_id: uuid::Uuid::new_v4().to_string(),
            device,
            state: AttachState::Attaching,
            boot: false,
            delete_on_termination,
            tag,
        };
        self.propose(Command::Compute(ComputeCommand::AttachServerVolume {
            server_id: s.id,
            volume: sv.clone(),
            updated_at: now(),
        }))
        .await?;
        Ok(sv)
    }

    /// Detaches a volume: the node unplugs it, then it is available again.
    pub async fn detach_volume(&self, auth: &Auth, id: &str, volume_id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        self.propose(Command::Compute(ComputeCommand::DetachServerVolume {
            server_id: s.id,
            volume_id: volume_id.into(),
            updated_at: now(),
        }))
        .await
    }

    /// The server's console log (its last `lines`), from its node.
    pub async fn console(&self, auth: &Auth, id: &str, lines: Option<usize>) -> Result<String> {
        let s = self.server(auth, id)?;
        if s.node == self.node() {
            return self.console_here(&s.id, lines);
        }
        self.ask(&s, NodeCall::Console { server: s.id.clone(), lines }, "console output").await
    }

    /// Sends a running server's guest a non-maskable interrupt (Nova's trigger_crash_dump,
    /// 2.17); 409 unless the server is active and has no task.
    pub async fn crash_dump(&self, auth: &Auth, id: &str) -> Result<()> {
        let s = self.server(auth, id)?;
        if s.vm_state != VmState::Active || s.task_state.is_some() {
            return Err(ComputeError::Conflict(format!(
                "Cannot 'trigger_crash_dump' instance {id} while it is in vm_state {} and task_state {}",
                s.vm_state.as_str(),
                s.task_state.map_or("None", |t| t.as_str())
            )));
        }
        if s.node == self.node() {
            return self.crash_dump_here(&s.id);
        }
        self.ask(&s, NodeCall::CrashDump { server: s.id.clone() }, "crash dump").await
    }

    /// The crash dump interrupt to a server of this node.
    pub fn crash_dump_here(&self, id: &str) -> Result<()> {
        self.local_driver(id)?
            .inject_nmi(id)
            .map_err(|e| ComputeError::Conflict(format!("Cannot trigger a crash dump of {id}: {e}")))
    }

    /// Console output of a server of this node (a peer asks on a client's behalf).
    pub fn console_here(&self, id: &str, lines: Option<usize>) -> Result<String> {
        self.local_driver(id)?.console(id, lines).map_err(|e| ComputeError::Internal(e.into()))
    }

    /// The live figures of a running server (admin only, as in Nova), from its node.
    pub async fn diagnostics(&self, auth: &Auth, id: &str) -> Result<Diagnostics> {
        admin_only(auth, "os_compute_api:os-server-diagnostics")?;
        let s = self.server(auth, id)?;
        if s.node == self.node() {
            return self.diagnostics_here(&s.id).await;
        }
        self.ask(&s, NodeCall::Diagnostics { server: s.id.clone() }, "diagnostics").await
    }

    /// Diagnostics of a server of this node; 409 unless its guest runs.
    pub async fn diagnostics_here(&self, id: &str) -> Result<Diagnostics> {
        let driver = self.local_driver(id)?;
        let s = self
            .view()?
            .server(id)?
            .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))?;
        let uptime = s.launched_at.map_or(0, |t| now().saturating_sub(t));
        let sid = s.id.clone();
        let found = tokio::task::spawn_blocking(move || driver.diagnostics(&sid, uptime))
            .await
            .map_err(|e| ComputeError::Internal(Box::new(e)))?
            .map_err(|e| ComputeError::Internal(e.into()))?;
        found.ok_or_else(|| {
            ComputeError::Conflict(format!(
                "Cannot 'get_diagnostics' instance {id} while it is in power_state {}",
                s.power_state.as_str()
            ))
        })
    }

    /// This node's hypervisor, which must be where server `id` runs.
    fn local_driver(&self, id: &str) -> Result<Arc<Driver>> {
        self.driver
            .clone()
            .ok_or_else(|| ComputeError::NotFound(format!("Server {id} is not on this node (it runs no guests).")))
    }

    /// Asks the node of server `s` a node call and decodes its answer.
    async fn ask<T: serde::de::DeserializeOwned>(&self, s: &Server, call: NodeCall, what: &str) -> Result<T> {
        let remote = self.remote.get().ok_or_else(|| {
            ComputeError::Conflict(format!(
                "Server {} runs on node {}, which this node cannot reach yet.",
                s.id, s.node
            ))
        })?;
        let failed = |e: &dyn std::fmt::Display| {
            ComputeError::Internal(format!("{what} of server {} from node {}: {e}", s.id, s.node).into())
        };
        match remote.call(&s.node, call).await {
            Ok(v) => serde_json::from_value(v).map_err(|e| failed(&e)),
            Err(CallError::NotFound(m)) => Err(ComputeError::NotFound(m)),
            Err(CallError::Conflict(m)) => Err(ComputeError::Conflict(m)),
            Err(CallError::Failed(m)) => Err(failed(&m)),
        }
    }
}
