//! The cluster's PKI: a CA made on the first node, a node certificate for every node naming its
//! addresses (both server and client use, for the public API and mutual TLS between peers),
//! fingerprints for join tokens, and the rustls server configuration.
//!
//! Files under `<data-dir>/pki/`: `ca.pem`, `ca.key` (0600), `node.pem`, `node.key` (0600).
//! The node certificate is re-issued at every start so it names the node's current addresses;
//! it carries the node's raft id as the URI `urn:cairn:node:<id>`, and the node's key stays
//! the same, so a peer is known on the peer port by id and key. A joining node gets its first certificate by CSR ([`csr`],
//! [`Pki::sign_csr`]) and, with it, the CA key: every node is a controller that can admit
//! the next one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::digest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// How long a node certificate is valid; it is re-issued at every start.
const NODE_CERT_DAYS: i64 = 365;
/// How long the cluster CA is valid.
const CA_YEARS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Io(#[from] crate::PathIo),
    #[error("certificate generation")]
    Rcgen(#[from] rcgen::Error),
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("TLS configuration")]
    Tls(#[from] rustls::Error),
}

/// The node's TLS identity and the cluster CA.
pub struct Pki {
    dir: PathBuf,
    pub ca_pem: String,
    pub node_cert_pem: String,
    node_key_pem: String,
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io(crate::PathIo { op: "reading", path: path.into(), source }))
}

/// Writes `data` atomically; secrets get mode 0600 from the start.
pub fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let io = |op, source| PkiError::Io(crate::PathIo { op, path: path.into(), source });
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| io("writing", e))?;
    if secret {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(|e| io("chmod", e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io("renaming", e))
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Cairn cluster CA");
    dn.push(DnType::OrganizationName, "Cairn");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(365 * CA_YEARS);
    Ok(p)
}

/// SHA-256 of the first certificate in `pem`, as lowercase hex (what join tokens pin).
pub fn fingerprint(pem: &str) -> Option<String> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
    Some(der_fingerprint(der.as_ref()))
}

/// The SAN URI naming raft node `id`.
fn node_uri(id: u64) -> Result<SanType, PkiError> {
    Ok(SanType::URI(format!("urn:cairn:node:{id}").try_into()?))
}

/// A node certificate's settings: server and client use, a year from an hour ago.
fn node_params(p: &mut CertificateParams, id: u64) -> Result<(), PkiError> {
    p.subject_alt_names.retain(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)));
    p.subject_alt_names.push(node_uri(id)?);
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(NODE_CERT_DAYS);
    Ok(())
}

/// Who a node certificate (DER) names: its raft id and the SHA-256 (hex) of its public key.
pub fn node_identity(der: &[u8]) -> Option<(u64, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let id = san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => u.strip_prefix("urn:cairn:node:")?.parse().ok(),
        _ => None,
    })?;
    Some((id, der_fingerprint(cert.public_key().raw)))
}

/// SHA-256 (hex) of the public key a CSR asks a certificate for.
pub fn csr_key(csr_pem: &str) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let der = rustls_pemfile::csr(&mut csr_pem.as_bytes()).ok()??;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).ok()?;
    Some(der_fingerprint(csr.certification_request_info.subject_pki.raw))
}

/// Makes this node's key (0600, replacing any) and a CSR for `names` and `addrs`, for joining.
pub fn csr(dir: &Path, node_name: &str, names: &[String], addrs: &[IpAddr]) -> Result<String, PkiError> {
    fs::create_dir_all(dir)
        .map_err(|source| PkiError::Io(crate::PathIo { op: "creating", path: dir.into(), source }))?;
    let key = KeyPair::generate()?;
    write_file(&dir.join("node.key"), key.serialize_pem().as_bytes(), true)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.subject_alt_names.extend(addrs.iter().map(|a| SanType::IpAddress(*a)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    p.distinguished_name = dn;
    Ok(p.serialize_request(&key)?.pem()?)
}

/// Checks that `csr_pem` is a well-formed, self-signed CSR.
pub fn check_csr(csr_pem: &str) -> Result<(), PkiError> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    Ok(())
}

/// Stores what a joining node was given: the CA (certificate and key) and its certificate.
pub fn install(dir: &Path, ca_pem: &str, ca_key_pem: &str, node_cert_pem: &str) -> Result<(), PkiError> {
    write_file(&dir.join("ca.key"), ca_key_pem.as_bytes(), true)?;
    write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), false)?;
    write_file(&dir.join("node.pem"), node_cert_pem.as_bytes(), false)
}

impl Pki {
    /// Loads the CA (creating it on first start) and issues the certificate of node `id` for
    /// `names` (DNS names) and `addrs`.
    pub fn ensure(dir: &Path, id: u64, node_name: &str, names: &[String], addrs: &[IpAddr]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir)
            .map_err(|source| PkiError::Io(crate::PathIo { op: "creating", path: dir.into(), source }))?;
        let (ca_pem_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if !ca_key_path.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&ca_pem_path, cert.pem().as_bytes(), false)?;
            log::info!("created cluster CA {}", ca_pem_path.display());
        }
        let ca_key = KeyPair::from_pem(&read(&ca_key_path)?)?;
        let ca_pem = read(&ca_pem_path)?;
        let issuer = Issuer::new(ca_params()?, ca_key);

        let node_key_path = dir.join("node.key");
        let node_key = if node_key_path.exists() {
            KeyPair::from_pem(&read(&node_key_path)?)?
        } else {
            let k = KeyPair::generate()?;
            write_file(&node_key_path, k.serialize_pem().as_bytes(), true)?;
            k
        };
        let mut p = CertificateParams::new(names.to_vec())?;
        p.subject_alt_names.extend(addrs.iter().map(|a| SanType::IpAddress(*a)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        p.distinguished_name = dn;
        node_params(&mut p, id)?;
        let node_cert_pem = p.signed_by(&node_key, &issuer)?.pem();
        write_file(&dir.join("node.pem"), node_cert_pem.as_bytes(), false)?;
        Ok(Self { dir: dir.into(), ca_pem, node_cert_pem, node_key_pem: node_key.serialize_pem() })
    }

    /// Signs a joining node's CSR as node `id`: the DNS names and addresses it asks for, its
    /// raft id, server and client use.
    pub fn sign_csr(&self, csr_pem: &str, id: u64) -> Result<String, PkiError> {
        let mut req = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        node_params(&mut req.params, id)?;
        let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&self.ca_key_pem()?)?);
        Ok(req.signed_by(&issuer)?.pem())
    }

    /// The CA's private key, handed to a node that joins.
    pub fn ca_key_pem(&self) -> Result<String, PkiError> {
        read(&self.dir.join("ca.key"))
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_fingerprint(&self) -> Option<String> {
        fingerprint(&self.ca_pem)
    }

    /// SHA-256 (hex) of this node's public key.
    pub fn node_key(&self) -> Option<String> {
        let der = rustls_pemfile::certs(&mut self.node_cert_pem.as_bytes()).next()?.ok()?;
        node_identity(&der).map(|(_, k)| k)
    }

    /// This node's certificate chain (node, CA) and key.
    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        chain_and_key(&self.ca_pem, &self.node_cert_pem, &self.node_key_pem)
    }

    /// TLS server configuration for the public API (no client certificate asked), offering
    /// HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let (chain, key) = self.identity()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// TLS server configuration for the peer port: the client must present a certificate the
    /// cluster CA signed (mutual TLS).
    pub fn peer_server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let (chain, key) = self.identity()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&self.ca_pem)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// TLS client configuration for calls to peers: trusts only the cluster CA and presents
    /// this node's certificate.
    pub fn peer_client_config(&self) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        mtls_client_config(&self.ca_pem, &self.node_cert_pem, &self.node_key_pem)
    }
}

/// The chain (certificate, then CA) and key, parsed from PEM.
fn chain_and_key(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let parse = |source| PkiError::Io(crate::PathIo { op: "parsing", path: "node certificate".into(), source });
    let mut chain = Vec::new();
    for pem in [cert_pem, ca_pem] {
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            chain.push(c.map_err(parse)?);
        }
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(parse)?
        .ok_or_else(|| PkiError::NoCertificate("node.key".into()))?;
    Ok((chain, key))
}

/// A TLS client trusting the CA in `ca_pem` and presenting `cert_pem` (then the CA) with
/// `key_pem`.
pub fn mtls_client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let (chain, key) = chain_and_key(ca_pem, cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The certificates in `ca_pem` as trust roots.
fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let c = c.map_err(|source| PkiError::Io(crate::PathIo { op: "parsing", path: "CA".into(), source }))?;
        roots.add(c)?;
    }
    Ok(roots)
}

/// A rustls client configuration trusting only the CA in `ca_pem` (for the benchmark, tests and
/// later node-to-node calls).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate, recording the chain; used only to fetch a peer's CA, which
/// the caller then checks against a pinned fingerprint.
#[derive(Debug)]
struct Recorder(std::sync::Mutex<Vec<Vec<u8>>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.0.lock() {
            c.push(end_entity.to_vec());
            c.extend(intermediates.iter().map(|i| i.to_vec()));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate chain a TLS server at `addr` presents (leaf first), unverified: callers
/// check it against a pinned fingerprint.
pub async fn peer_chain(addr: SocketAddr) -> Result<Vec<Vec<u8>>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder(std::sync::Mutex::default(), provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let io = |source| PkiError::Io(crate::PathIo { op: "connecting to", path: addr.to_string().into(), source });
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.map_err(io)?;
    let chain = recorder.0.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(chain)
}

/// A DER certificate as PEM.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn der_fingerprint(der: &[u8]) -> String {
    digest::digest(&digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ca_persists_keys_are_private_and_cert_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let addrs = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let a = Pki::ensure(dir.path(), 1, "n1", &["localhost".into()], &addrs).unwrap();
        let b = Pki::ensure(dir.path(), 1, "n1", &["localhost".into()], &addrs).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem, "CA is made once");
        for k in ["ca.key", "node.key"] {
            let mode = fs::metadata(dir.path().join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
        assert_eq!(a.ca_fingerprint().unwrap().len(), 64);
        // The node certificate chains to the CA for the names and addresses it was issued for.
        let cfg = client_config(&a.ca_pem).unwrap();
        let server = b.server_config().unwrap();
        for name in ["localhost", "127.0.0.1"] {
            handshake(&cfg, &server, name).unwrap_or_else(|e| panic!("handshake with {name}: {e}"));
        }
        assert!(handshake(&cfg, &server, "evil.example").is_err(), "wrong name refused");
    }

    #[test]
    fn the_peer_port_takes_only_certificates_of_the_cluster_ca() {
        let (a, b, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let addrs = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let node = Pki::ensure(a.path(), 1, "n1", &["localhost".into()], &addrs).unwrap();
        // A second node of the same cluster: its certificate signed by the same CA.
        for f in ["ca.pem", "ca.key"] {
            fs::copy(a.path().join(f), b.path().join(f)).unwrap();
        }
        let peer = Pki::ensure(b.path(), 2, "n2", &["localhost".into()], &addrs).unwrap();
        let stranger = Pki::ensure(other.path(), 1, "x", &["localhost".into()], &addrs).unwrap();
        let server = node.peer_server_config().unwrap();
        handshake(&peer.peer_client_config().unwrap(), &server, "localhost").expect("a cluster peer is let in");
        // No client certificate: refused.
        let anonymous = client_config(&node.ca_pem).unwrap();
        assert!(handshake(&anonymous, &server, "localhost").is_err(), "no client certificate");
        // A certificate from another CA (another cluster, or a man in the middle): refused,
        // whichever side it plays.
        let foreign = stranger.peer_client_config().unwrap();
        assert!(handshake(&foreign, &server, "localhost").is_err(), "a foreign client");
        assert!(
            handshake(&peer.peer_client_config().unwrap(), &stranger.peer_server_config().unwrap(), "localhost")
                .is_err(),
            "a foreign server"
        );
    }

    #[test]
    fn a_joining_node_is_signed_with_its_raft_id() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let addrs = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
        let seed = Pki::ensure(a.path(), 1, "n1", &["localhost".into()], &addrs).unwrap();
        let own = rustls_pemfile::certs(&mut seed.node_cert_pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(node_identity(&own).map(|i| i.0), Some(1));
        let request = csr(b.path(), "n7", &["n7".into()], &addrs).unwrap();
        let cert = seed.sign_csr(&request, 7).unwrap();
        let der = rustls_pemfile::certs(&mut cert.as_bytes()).next().unwrap().unwrap();
        // The certificate carries the CSR's key and the id the cluster gave.
        assert_eq!(node_identity(&der), Some((7, csr_key(&request).unwrap())));
        assert_ne!(seed.node_key(), csr_key(&request));
        install(b.path(), &seed.ca_pem, &seed.ca_key_pem().unwrap(), &cert).unwrap();
        let mode = fs::metadata(b.path().join("ca.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A CSR that asks for another node's id gets the one the cluster gives.
        let mut p = CertificateParams::new(vec!["x".to_string()]).unwrap();
        p.subject_alt_names.push(node_uri(1).unwrap());
        let forged = p.serialize_request(&KeyPair::generate().unwrap()).unwrap().pem().unwrap();
        let signed = seed.sign_csr(&forged, 8).unwrap();
        let der = rustls_pemfile::certs(&mut signed.as_bytes()).next().unwrap().unwrap();
        assert_eq!(node_identity(&der).map(|i| i.0), Some(8));
        assert!(seed.sign_csr("not a csr", 9).is_err());
    }

    /// Runs a TLS handshake in memory between a client for `name` and the server.
    fn handshake(
        cfg: &Arc<rustls::ClientConfig>,
        server: &Arc<rustls::ServerConfig>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let sn = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(cfg.clone(), sn)?;
        let mut srv = rustls::ServerConnection::new(server.clone())?;
        // Until both sides are done: under TLS 1.3 the server judges the client's certificate
        // after the client has finished.
        while client.is_handshaking() || srv.is_handshaking() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            srv.read_tls(&mut buf.as_slice()).unwrap();
            srv.process_new_packets()?;
            let mut buf = Vec::new();
            srv.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        Ok(())
    }
}
