//! Key pairs: a user's SSH public keys or (2.2) X.509 certificates, checked and
//! fingerprinted as Nova does; an admin's for other users (2.10).

use super::keygen::BadKey;
use super::*;
use crate::state::ComputeCommand;

impl Compute {
    /// Whose key pairs a request is about: the caller's, or (2.10) an admin's choice.
    fn key_owner(auth: &Auth, user: Option<&str>) -> Result<String> {
        match user {
            Some(u) if u != auth.user.id => {
                admin_only(auth, "os_compute_api:os-keypairs")?;
                Ok(u.to_owned())
            }
            _ => Ok(auth.user.id.clone()),
        }
    }

    pub fn keypairs(&self, auth: &Auth, user: Option<&str>) -> Result<Vec<Keypair>> {
        let mut k = self.view()?.keypairs(&Self::key_owner(auth, user)?)?;
        k.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(k)
    }

    pub fn keypair(&self, auth: &Auth, user: Option<&str>, name: &str) -> Result<Keypair> {
        let owner = Self::key_owner(auth, user)?;
        self.view()?
            .keypair(&owner, name)?
            .ok_or_else(|| ComputeError::NotFound(format!("Keypair {name} not found for user {owner}")))
    }

    /// Records a key pair: an SSH public key, or (2.2) an X.509 certificate in PEM.
    pub async fn create_keypair(&self, auth: &Auth, user: Option<&str>, new: NewKeypair) -> Result<Keypair> {
        let bad = |m: String| ComputeError::BadRequest(m);
        let NewKeypair { name, public_key, kind } = new;
        if name.trim().is_empty()
            || name.chars().count() > 255
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_. @".contains(c))
        {
            return Err(bad(format!(
                "Keypair data is invalid: Keypair name {name:?} must be 1 to 255 letters, digits, '-', '_', '.', '@' or spaces"
            )));
        }
        let fingerprint = match kind {
            KeyKind::Ssh => fingerprint(&public_key),
            KeyKind::X509 => keygen::x509_fingerprint(&public_key),
        };
        let fingerprint = fingerprint.map_err(|e| bad(format!("Keypair data is invalid: {e}")))?;
        let k = Keypair {
            name: name.clone(),
            user_id: Self::key_owner(auth, user)?,
            public_key: public_key.trim().into(),
            fingerprint,
            kind: kind.as_str().into(),
            created_at: now(),
        };
        self.propose(Command::Compute(ComputeCommand::CreateKeypair(k.clone()))).await.map_err(|e| match e {
            ComputeError::Conflict(_) => ComputeError::Conflict(format!("Key pair '{name}' already exists.")),
            e => e,
        })?;
        Ok(k)
    }

    pub async fn delete_keypair(&self, auth: &Auth, user: Option<&str>, name: &str) -> Result<()> {
        let k = self.keypair(auth, user, name)?;
        self.propose(Command::Compute(ComputeCommand::DeleteKeypair { user_id: k.user_id, name: name.into() })).await
    }
}

/// An OpenSSH public key line's MD5 fingerprint (`aa:bb:…`), after checking that it is one.
pub fn fingerprint(line: &str) -> std::result::Result<String, BadKey> {
    use base64::Engine;
    use md5::Digest;
    let mut words = line.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Err(BadKey("a public key is `<type> <base64 key> [comment]`".into()));
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
        return Err(BadKey(format!("key type {kind} is not one of {}", KINDS.join(", "))));
    }
    let raw =
        base64::engine::general_purpose::STANDARD.decode(blob).map_err(|_| BadKey("the key is not base64".into()))?;
    // The blob starts with its own type, length-prefixed.
    let named = raw
        .get(..4)
        .and_then(|l| usize::try_from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok())
        .and_then(|n| raw.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(BadKey(format!("the key data is not a {kind} key")));
    }
    let digest = md5::Md5::digest(&raw);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}
