//! The peer port: HTTP/1.1 over mutual TLS between the nodes of one cluster. It carries
//! openraft's RPCs, requests for the leader ([`LeaderRequest`]) and node calls.
//!
//! A caller must present a certificate of the cluster CA naming a node id (see
//! [`crate::pki::node_identity`]) that is a raft member (or one of the nodes this node was
//! told of when it joined), was never removed, and carrying the public key registered for that
//! id; each request is checked, so a node removed while connected is cut off at its next
//! request. Requests are JSON in, JSON out.

use crate::client::{Client, Conn};
use crate::state::raft::{Forward, ForwardError, LeaderReply, LeaderRequest, NodeId, Replicated, TypeConfig};
use crate::transport::{whole, Body};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const APPEND: &str = "/raft/append";
const VOTE: &str = "/raft/vote";
const SNAPSHOT: &str = "/raft/snapshot";
const LEADER: &str = "/leader";
const CALL: &str = "/call";
/// [`ImageWanted`] → the bytes of an image in this node's store, streamed.
const IMAGE: &str = "/image";

#[derive(Serialize, Deserialize)]
struct ImageWanted {
    id: String,
}

/// A node call: a question only the node asked can answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum NodeCall {
    /// The console output of one of its servers.
    Console { server: String, lines: Option<usize> },
    /// The live figures of one of its servers ([`crate::model::compute::Diagnostics`]).
    Diagnostics { server: String },
    /// Its host probe, taken now ([`crate::host::NodeProbe`]).
    Probe,
    /// A non-maskable interrupt to one of its servers (Nova's trigger_crash_dump).
    CrashDump { server: String },
}

/// Why a node call got no answer, in the terms the caller's client is told.
#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}
/// Largest peer request (a snapshot chunk is 3 MiB by default).
const MAX_BODY: usize = 64 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a peer's answer when the caller gives no deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("connecting to peer {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer {addr} answered {status}: {message}")]
    Status { addr: String, status: u16, message: String },
    #[error("peer {addr} did not answer in time")]
    Timeout { addr: String },
    #[error("HTTP with a peer")]
    Http(#[from] crate::client::ClientError),
    #[error("peer message")]
    Json(#[from] serde_json::Error),
}

/// A peer's answer other than 200, with the start of what it said.
fn refused(addr: &str, status: u16, body: &[u8]) -> PeerError {
    let message = String::from_utf8_lossy(body).chars().take(500).collect();
    PeerError::Status { addr: addr.into(), status, message }
}

/// Calls to peers over mutual TLS, keeping idle connections for reuse.
#[derive(Clone)]
pub struct Peers {
    tls: Arc<rustls::ClientConfig>,
    idle: Arc<Mutex<HashMap<String, Vec<Conn>>>>,
}

impl Peers {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls, idle: Arc::default() }
    }

    /// A ready connection to `addr`: an idle one that is still open, else a new one. Nothing
    /// has been sent when this fails.
    async fn ready(&self, addr: &str) -> Result<Conn, PeerError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).get_mut(addr).and_then(Vec::pop);
            let Some(mut conn) = idle else { break };
            if conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        let connect_err = |e: &dyn std::error::Error| PeerError::Connect {
            addr: addr.into(),
            source: std::io::Error::other(crate::error_chain(e)),
        };
        let sock: std::net::SocketAddr = addr.parse().map_err(|e| connect_err(&e))?;
        Client::with_tls(sock, self.tls.clone()).connect().await.map_err(|e| connect_err(&e))
    }

    /// POSTs `req` to `path` on the peer at `addr` and decodes its answer. A [`PeerError::Connect`]
    /// means the request was never sent.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Q,
        timeout: Option<Duration>,
    ) -> Result<A, PeerError> {
        let body = serde_json::to_vec(req)?;
        let mut conn = self.ready(addr).await?;
        let exchange = conn.request(Method::POST, path, &[], Some(body));
        let resp = tokio::time::timeout(timeout.unwrap_or(CALL_TIMEOUT), exchange)
            .await
            .map_err(|_| PeerError::Timeout { addr: addr.into() })??;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).entry(addr.into()).or_default().push(conn);
        if resp.status != 200 {
            return Err(refused(addr, resp.status, &resp.body));
        }
        Ok(serde_json::from_slice(&resp.body)?)
    }
}

impl Peers {
    /// Asks the node at `addr` a [`NodeCall`].
    pub async fn node_call(&self, addr: &str, call: &NodeCall) -> Result<serde_json::Value, CallError> {
        self.call::<_, Result<serde_json::Value, CallError>>(addr, CALL, call, None)
            .await
            .map_err(|e| CallError::Failed(crate::error_chain(&e)))?
    }
}

impl Peers {
    /// The bytes of image `id` from the node at `addr`, as they arrive. The connection is not
    /// reused (a stream half read would leave it unusable).
    pub async fn image(&self, addr: &str, id: &str) -> Result<crate::image::ByteStream, PeerError> {
        let body = serde_json::to_vec(&ImageWanted { id: id.into() })?;
        let mut conn = self.ready(addr).await?;
        let started = conn.request_streamed(Method::POST, IMAGE, body);
        let resp = tokio::time::timeout(CALL_TIMEOUT, started)
            .await
            .map_err(|_| PeerError::Timeout { addr: addr.into() })??;
        if resp.status() != StatusCode::OK {
            let status = resp.status().as_u16();
            let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(refused(addr, status, &text));
        }
        // Each piece must come within the call timeout: a stalled peer fails the fetch.
        let frames = http_body_util::BodyDataStream::new(resp.into_body());
        Ok(Box::pin(futures_util::stream::unfold(frames, |mut f| async move {
            match tokio::time::timeout(CALL_TIMEOUT, futures_util::StreamExt::next(&mut f)).await {
                Ok(Some(r)) => Some((r.map_err(|e| crate::image::FetchError(e.to_string())), f)),
                Ok(None) => None,
                Err(_) => Some((Err(crate::image::FetchError(format!("no data for {} s", CALL_TIMEOUT.as_secs()))), f)),
            }
        })))
    }
}

impl Forward for Peers {
    fn forward<'a>(
        &'a self,
        addr: &'a str,
        req: &'a LeaderRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<LeaderReply, ForwardError>> + Send + 'a>> {
        Box::pin(async move {
            self.call(addr, LEADER, req, None).await.map_err(|e| match e {
                PeerError::Connect { .. } => ForwardError::Unsent(crate::error_chain(&e)),
                e => ForwardError::Unknown(crate::error_chain(&e)),
            })
        })
    }
}

/// openraft's view of the peer transport: one [`PeerLink`] per target.
pub struct PeerNetwork(pub Peers);

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerLink;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        PeerLink { peers: self.0.clone(), target, addr: node.addr.clone() }
    }
}

pub struct PeerLink {
    peers: Peers,
    target: NodeId,
    addr: String,
}

impl PeerLink {
    async fn rpc<Q: Serialize, A: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        path: &str,
        req: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        match self
            .peers
            .call::<_, Result<A, RaftError<NodeId, E>>>(&self.addr, path, req, Some(option.hard_ttl()))
            .await
        {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e @ PeerError::Connect { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.rpc(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(VOTE, &rpc, &option).await
    }
}

/// What answers the node calls about this node's servers (its compute service): the peer
/// port depends on this, not on the compute service itself.
pub trait NodeCalls: Send + Sync {
    fn answer(&self, call: NodeCall) -> futures_util::future::BoxFuture<'_, Result<serde_json::Value, CallError>>;
}

/// The serving side of the peer port.
pub struct PeerService {
    pub state: Replicated,
    /// The nodes this node was told of when it joined (id → key): it takes their calls before
    /// its own log has caught up.
    pub known: BTreeMap<NodeId, String>,
    /// This node's compute service, once it is up, for node calls.
    pub compute: std::sync::OnceLock<Arc<dyn NodeCalls>>,
    pub prober: crate::host::Prober,
    /// This node's image service, once it is up, for peers fetching images.
    pub images: std::sync::OnceLock<Arc<crate::image::Images>>,
}

impl PeerService {
    async fn answer(&self, call: NodeCall) -> Result<serde_json::Value, CallError> {
        if let NodeCall::Probe = call {
            let probe = self.prober.run().await.map_err(|e| CallError::Failed(e.to_string()))?;
            return serde_json::to_value(probe).map_err(|e| CallError::Failed(e.to_string()));
        }
        let compute = self.compute.get().ok_or_else(|| CallError::Conflict("The node is still starting.".into()))?;
        compute.answer(call).await
    }

    /// `POST /image`: streams an active image's bytes from this node's store.
    async fn send_image(&self, id: String) -> Response<Body> {
        let Some(images) = self.images.get() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "the node is still starting");
        };
        match images.stored(&id).await {
            Ok(Some((file, len))) => crate::transport::stream_file(file, len),
            Ok(None) => text(StatusCode::NOT_FOUND, &format!("image {id} is not active in this node's store")),
            Err(crate::image::ImageError::NotFound(_)) => text(StatusCode::NOT_FOUND, &format!("no image {id}")),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &crate::error_chain(&e)),
        }
    }

    /// Whether node `id` holding `key` may call: a member (or known from the join), never
    /// removed, with the key the cluster registered for it.
    pub fn admits(&self, id: NodeId, key: &str) -> bool {
        let Ok(view) = self.state.store().view() else { return false };
        let removed = view.is_removed(id).unwrap_or(true);
        let registered =
            view.node_keys().ok().and_then(|k| k.get(&id).cloned()).or_else(|| self.known.get(&id).cloned());
        let member = self.known.contains_key(&id) || self.state.peers().contains_key(&id);
        !removed && member && registered.as_deref() == Some(key)
    }

    async fn handle(&self, from: NodeId, key: &str, req: Request<Incoming>) -> Response<Body> {
        if !self.admits(from, key) {
            log::warn!("peer call as node {from}, which is not a member of this cluster with that key: refused");
            return text(StatusCode::FORBIDDEN, "not a member of this cluster");
        }
        let path = req.uri().path().to_owned();
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST only");
        }
        let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let raft = self.state.raft();
        let answer = match path.as_str() {
            APPEND => decode(&bytes).map(|r| async move { encode(&raft.append_entries(r).await) }.boxed()),
            VOTE => decode(&bytes).map(|r| async move { encode(&raft.vote(r).await) }.boxed()),
            SNAPSHOT => decode(&bytes).map(|r| async move { encode(&raft.install_snapshot(r).await) }.boxed()),
            LEADER => decode::<LeaderRequest>(&bytes)
                .map(|r| async move { encode(&self.state.serve_leader(&r).await) }.boxed()),
            CALL => decode::<NodeCall>(&bytes).map(|c| async move { encode(&self.answer(c).await) }.boxed()),
            IMAGE => decode::<ImageWanted>(&bytes).map(|w| self.send_image(w.id).boxed()),
            _ => return text(StatusCode::NOT_FOUND, "no such peer call"),
        };
        match answer {
            Ok(f) => f.await,
            Err(bad) => *bad,
        }
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(whole(Bytes::from(msg.to_owned())));
    *r.status_mut() = status;
    r
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<Response<Body>>> {
    serde_json::from_slice(bytes)
        .map_err(|e| Box::new(text(StatusCode::BAD_REQUEST, &format!("bad peer message: {e}"))))
}

fn encode<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(b) => {
            let mut r = Response::new(whole(Bytes::from(b)));
            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Serves the peer port: mutual TLS (`tls` asks for a client certificate of the cluster CA),
/// then every request from an admitted node.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, service: Arc<PeerService>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("peer accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return log::warn!("peer TLS handshake with {addr} refused: {e}"),
                Err(_) => return log::debug!("peer TLS handshake with {addr} timed out"),
            };
            let who =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::pki::node_identity(c));
            let Some((id, key)) = who else {
                return log::warn!("peer {addr} presented a certificate naming no node: refused");
            };
            let key: Arc<str> = key.into();
            let svc = hyper::service::service_fn(move |req| {
                let (service, key) = (service.clone(), key.clone());
                async move { Ok::<_, Infallible>(service.handle(id, &key, req).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                log::debug!("peer connection from {addr}: {e}");
            }
        });
    }
}
