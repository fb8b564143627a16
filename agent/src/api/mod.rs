//! The public HTTPS API: one TLS listener serving every OpenStack service under devstack's
//! path prefixes (`/identity`, `/network`, `/image`, `/volume`, `/compute`) and
//! `/healthz`. HTTP only: routing, (de)serialising and OpenStack error bodies; the logic lives
//! in the modules it calls.
//!
//! Each request runs in its own task, so a panic in a handler becomes a 500 for that request and
//! never takes the listener down.

pub mod cinder;
pub mod cluster;
pub mod error;
pub mod glance;
pub mod http;
pub mod keystone;
pub mod neutron;
pub mod nova;
pub mod params;

use crate::host::{DataDir, HostFacts};
use crate::identity::Identity;
use crate::net::service::Networking;
use error::ApiError;
use http::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
pub struct Api {
    /// The replicated state, for the notification stream.
    pub state: crate::state::raft::Replicated,
    pub identity: Identity,
    pub compute: Arc<crate::compute::Compute>,
    pub cluster: Arc<crate::cluster::Cluster>,
    pub network: Arc<Networking>,
    pub images: Arc<crate::image::Images>,
    pub storage: Arc<crate::storage::Storage>,
    /// The host network agent's last pass.
    pub net_status: crate::net::agent::StatusHandle,
    /// Base URL for links and the catalog (e.g. `https://10.0.0.5`); when unset, derived from
    /// each request's `Host` header so forwarded ports work.
    pub public_url: Option<String>,
    /// What the host probe found at start.
    pub host: HostFacts,
    /// Where the state lives, as found at start.
    pub data_dir: DataDir,
}

impl Api {
    fn base_url(&self, req: &Request<Incoming>) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_owned();
        }
        let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("https://{host}")
    }
}

/// Accepts connections until the listener fails; each connection is served in its own task.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, api: Arc<Api>) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return log::debug!("TLS handshake with {peer}: {e}"),
                Err(_) => return log::debug!("TLS handshake with {peer} timed out"),
            };
            let service = hyper::service::service_fn(move |req| dispatch(api.clone(), req, peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

async fn dispatch(api: Arc<Api>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let handled = tokio::spawn(route(api, req, peer)).await;
    let mut resp = match handled {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => render(e, &path),
        Err(join) => {
            log::error!("{method} {path}: handler failed: {join}");
            render(ApiError::Internal(Box::new(join)), &path)
        }
    };
    let id = format!("req-{}", uuid::Uuid::new_v4());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    Ok(resp)
}

/// The caller's validated token (`X-Auth-Token`).
fn authenticate(api: &Api, req: &Request<Incoming>) -> Result<std::sync::Arc<crate::identity::Auth>, ApiError> {
    let token = req.headers().get("x-auth-token").and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
    Ok(api.identity.validate(token)?)
}

fn not_allowed(method: &hyper::Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("The method {method} is not allowed for this resource."))
}

/// The error in the body format of the service the path belongs to.
fn render(e: ApiError, path: &str) -> Response<Body> {
    let e = match e {
        ApiError::Internal(source) => {
            log::error!("internal error: {}", crate::error_chain(source.as_ref()));
            // A cluster between leaders (or a leader that did not answer) is a passing state.
            if in_chain::<crate::state::StateError>(source.as_ref())
                .is_some_and(|s| matches!(s, crate::state::StateError::NoLeader(_)))
            {
                ApiError::Unavailable("The cluster has no leader at the moment; try again shortly.".into())
            } else {
                ApiError::Internal(source)
            }
        }
        e => e,
    };
    let body = if path.starts_with("/network") {
        e.neutron_body()
    } else if path.starts_with("/compute") || path.starts_with("/volume") {
        e.nova_body()
    } else {
        e.keystone_body()
    };
    http::json(e.status(), &body)
}

/// The first error of type `T` in `e`'s source chain.
fn in_chain<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// Most notifications one read returns.
const EVENTS_PAGE: usize = 1000;
/// Longest a reader may wait for new notifications.
const EVENTS_MAX_WAIT: Duration = Duration::from_secs(60);

/// `GET /cairn/v1/events?after=N&limit=L&wait=S` (admin): the notifications after number N
/// (0: from the oldest kept), waiting up to S seconds for one when there are none yet; `next`
/// is the `after` of the following read.
async fn events(api: &Api, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let auth = authenticate(api, &req)?;
    if !auth.is_admin() {
        return Err(ApiError::Forbidden("Reading notifications needs the admin role.".into()));
    }
    if req.method() != hyper::Method::GET {
        return Err(not_allowed(req.method()));
    }
    let query = http::query_pairs(req.uri().query());
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| {
                v.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("{k} must be a number, not {v:?}")))
            })
            .transpose()
    };
    let after = num("after")?.unwrap_or(0);
    let limit = num("limit")?.map_or(EVENTS_PAGE, |l| usize::try_from(l).unwrap_or(EVENTS_PAGE).clamp(1, EVENTS_PAGE));
    let wait = Duration::from_secs(num("wait")?.unwrap_or(0)).min(EVENTS_MAX_WAIT);
    let store = api.state.store();
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    let internal = |e: crate::state::StateError| ApiError::Internal(Box::new(e));
    let found = loop {
        let found = store.view().map_err(internal)?.events_after(after, limit).map_err(internal)?;
        if !found.is_empty() {
            break found;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => break found,
        }
    };
    let next = found.last().map_or(after, |n| n.seq);
    Ok(http::json(StatusCode::OK, &serde_json::json!({"events": found, "next": next})))
}

async fn route(api: Arc<Api>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // An OpenStack read on any node sees every write acknowledged before it, whichever node
    // took the write (health checks and the cluster's own listings answer without a quorum).
    let service = matches!(segs.first(), Some(&("identity" | "network" | "image" | "volume" | "compute" | "v3")));
    if service && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) {
        api.state.linearize().await.map_err(|e| ApiError::Internal(Box::new(e)))?;
    }
    match segs.as_slice() {
        ["healthz"] => Ok(http::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        ["identity", rest @ ..] => keystone::route(&api, req, rest, peer).await,
        ["network", rest @ ..] => neutron::route(&api, req, rest).await,
        ["image", rest @ ..] => glance::route(&api, req, rest).await,
        ["volume", rest @ ..] => cinder::route(&api, req, rest).await,
        ["compute", rest @ ..] => nova::route(&api, req, rest).await,
        ["cairn", "v1", what @ ("host" | "network")] => {
            let auth = authenticate(&api, &req)?;
            if !auth.is_admin() {
                return Err(ApiError::Forbidden("Reading the node's facts needs the admin role.".into()));
            }
            let internal = |e: serde_json::Error| ApiError::Internal(Box::new(e));
            let body = if *what == "host" {
                let facts = serde_json::to_value(&api.host).map_err(internal)?;
                let data = serde_json::to_value(&api.data_dir).map_err(internal)?;
                serde_json::json!({"host": facts, "data_dir": data})
            } else {
                let st = api.net_status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                serde_json::json!({"network": serde_json::to_value(st).map_err(internal)?})
            };
            Ok(http::json(StatusCode::OK, &body))
        }
        ["cairn", "v1", "events"] => events(&api, req).await,
        ["cairn", "v1", "tokens", rest @ ..] => cluster::route(&api, req, rest).await,
        ["cairn", "v1", "nodes"] => cluster::nodes(&api, &req),
        ["cairn", "v1", "nodes", id] => cluster::remove_node(&api, &req, id).await,
        ["cairn", "v1", "nodes", id, "probe"] => cluster::probe(&api, &req, id).await,
        ["cairn", "v1", "join"] => cluster::join(&api, req).await,
        ["v3", ..] => keystone::route(&api, req, &segs, peer).await,
        _ => Err(ApiError::NotFound(format!("No such resource: {path}"))),
    }
}
