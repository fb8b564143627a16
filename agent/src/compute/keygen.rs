//! Key pairs made here when a create names no public key, as Nova makes them: an Ed25519 key
//! (ring's generator) as an OpenSSH public key line and an unencrypted OpenSSH private key,
//! which the API returns once and never keeps; or (Nova 2.2's `x509` kind) a self-signed
//! certificate and its key in PEM.

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Why a public key is refused: it is not what its kind says.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadKey(pub String);

/// Why a key could not be made (the system's random source failed).
#[derive(Debug, thiserror::Error)]
#[error("generating a key pair: {0}")]
pub struct KeygenError(String);

/// The seed's place in ring's PKCS#8 (v2) document of an Ed25519 key.
const SEED: std::ops::Range<usize> = 16..48;
const KIND: &str = "ssh-ed25519";

/// An SSH string: its length (u32, big-endian), then its bytes.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A new key pair: (`ssh-ed25519 AAAA… comment`, the OpenSSH private key in PEM armour).
pub fn ed25519(comment: &str) -> Result<(String, String), KeygenError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeygenError(e.to_string()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| KeygenError(e.to_string()))?;
    let seed = pkcs8.as_ref().get(SEED).ok_or_else(|| KeygenError("short PKCS#8 document".into()))?;
    let public = pair.public_key().as_ref();
    let mut blob = Vec::new();
    put(&mut blob, KIND.as_bytes());
    put(&mut blob, public);
    let b64 = base64::engine::general_purpose::STANDARD;
    let public_line = format!("{KIND} {} {comment}", b64.encode(&blob));

    let mut check = [0u8; 4];
    ring::rand::SecureRandom::fill(&rng, &mut check).map_err(|e| KeygenError(e.to_string()))?;
    let mut private = Vec::new();
    private.extend_from_slice(&check);
    private.extend_from_slice(&check);
    put(&mut private, KIND.as_bytes());
    put(&mut private, public);
    put(&mut private, &[seed, public].concat());
    put(&mut private, comment.as_bytes());
    for pad in 1..=7u8 {
        if private.len() % 8 == 0 {
            break;
        }
        private.push(pad);
    }
    let mut doc = b"openssh-key-v1\0".to_vec();
    put(&mut doc, b"none");
    put(&mut doc, b"none");
    put(&mut doc, b"");
    doc.extend_from_slice(&1u32.to_be_bytes());
    put(&mut doc, &blob);
    put(&mut doc, &private);
    let body = b64.encode(&doc);
    let lines: Vec<&str> = body.as_bytes().chunks(70).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    let pem = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", lines.join("\n"));
    Ok((public_line, pem))
}

/// A new X.509 key pair: (a self-signed certificate for `name`, its private key), both PEM.
pub fn x509(name: &str) -> Result<(String, String), KeygenError> {
    let key = rcgen::KeyPair::generate().map_err(|e| KeygenError(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(|e| KeygenError(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The fingerprint Nova shows of an X.509 key pair: the SHA-1 of the certificate's DER, in
/// colon-separated hex. The text must be one PEM certificate that parses.
pub fn x509_fingerprint(pem: &str) -> Result<String, BadKey> {
    let mut reader = pem.as_bytes();
    let der = match rustls_pemfile::read_one(&mut reader) {
        Ok(Some(rustls_pemfile::Item::X509Certificate(der))) => der,
        _ => return Err(BadKey("the public key is not a PEM X.509 certificate".into())),
    };
    x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| BadKey(format!("the certificate does not parse: {e}")))?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_holds_the_public_key_and_its_seed() {
        let (public, pem) = ed25519("k1").unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") && public.ends_with(" k1"), "{public}");
        assert!(crate::compute::fingerprint(&public).is_ok());
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let doc = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        assert!(doc.starts_with(b"openssh-key-v1\0"));
        // The last 64 bytes of the key material: the seed, then the public key; the seed
        // derives that public key.
        let raw = base64::engine::general_purpose::STANDARD.decode(public.split(' ').nth(1).unwrap()).unwrap();
        let pubkey = &raw[raw.len() - 32..];
        let at = doc.windows(64).rposition(|w| &w[32..] == pubkey).unwrap();
        let seed = &doc[at..at + 32];
        let derived = Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
        assert_eq!(derived.public_key().as_ref(), pubkey);
        assert_ne!(ed25519("k1").unwrap().0, public, "a new key each time");
    }

    #[test]
    fn x509_pairs_are_made_and_fingerprinted() {
        let (cert, key) = x509("my key").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----") && key.contains("PRIVATE KEY"));
        let f = x509_fingerprint(&cert).unwrap();
        assert_eq!(f.len(), 20 * 3 - 1, "{f}");
        assert!(x509_fingerprint(&key).is_err());
        assert!(x509_fingerprint("ssh-ed25519 AAAA k").is_err());
    }
}
