//! A small HTTPS client with keep-alive connections, trusting only a given CA: used by the
//! benchmark and the integration tests to drive a running agent.

use crate::transport::{file_body, whole, Body};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup")]
    Tls(#[from] crate::pki::PkiError),
    #[error("HTTP")]
    Http(#[from] hyper::Error),
    #[error("building request")]
    Request(#[from] hyper::http::Error),
}

/// Where to connect and whom to trust.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
    addr: SocketAddr,
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Body>,
    host: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self, ClientError> {
        Ok(Self::with_tls(addr, crate::pki::client_config(ca_pem)?))
    }

    /// A client with its own TLS settings (a peer's, presenting a node certificate).
    pub fn with_tls(addr: SocketAddr, tls: std::sync::Arc<rustls::ClientConfig>) -> Self {
        Self { tls: TlsConnector::from(tls), addr }
    }

    pub async fn connect(&self) -> Result<Conn, ClientError> {
        let err = |source| ClientError::Connect { addr: self.addr, source };
        let tcp = tokio::net::TcpStream::connect(self.addr).await.map_err(err)?;
        tcp.set_nodelay(true).map_err(err)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.tls.connect(name, tcp).await.map_err(err)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, host: self.addr.to_string() })
    }
}

impl Conn {
    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, ClientError> {
        let req = self.build(method, path, headers, body)?;
        self.send(req).await
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Request<Body>, ClientError> {
        let mut b = Request::builder().method(method).uri(path).header("host", &self.host);
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        Ok(b.body(whole(body.map(Bytes::from).unwrap_or_default()))?)
    }

    /// Sends a file as the body, streamed (`application/octet-stream`).
    pub async fn upload(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        file: tokio::fs::File,
    ) -> Result<Resp, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/octet-stream");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(file_body(file))?).await
    }

    /// Waits until the connection can take a request; fails when it is closed.
    pub async fn ready(&mut self) -> Result<(), ClientError> {
        Ok(self.sender.ready().await?)
    }

    /// Sends one request and returns the answer with its body still to be read (a stream).
    pub async fn request_streamed(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let req = self.build(method, path, &[], Some(body))?;
        self.exchange(req).await
    }

    async fn exchange(&mut self, req: Request<Body>) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    async fn send(&mut self, req: Request<Body>) -> Result<Resp, ClientError> {
        let resp = self.exchange(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp { status, headers, body })
    }

    /// Logs in with a password, scoped to a project; returns the token.
    pub async fn login(&mut self, user: &str, password: &str, project: &str) -> Result<Option<String>, ClientError> {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        let r =
            self.request(Method::POST, "/identity/v3/auth/tokens", &[], Some(body.to_string().into_bytes())).await?;
        Ok(r.header("x-subject-token").filter(|_| r.status == 201).map(str::to_owned))
    }
}
