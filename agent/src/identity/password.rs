//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, as OWASP
//! recommends). Hashing is deliberately slow; callers run it off the async threads.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The parameters in force, for the benchmark's report.
pub fn parameters() -> String {
    let p = argon2::Params::default();
    format!("argon2id m={}KiB t={} p={}", p.m_cost(), p.t_cost(), p.p_cost())
}

#[derive(Debug, thiserror::Error)]
#[error("hashing password: {0}")]
pub struct HashError(String);

pub fn hash(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checked against when the user does not exist, so that an unknown user costs the same time
/// as a wrong password. Same parameters as [`hash`]; a fixed string saves an argon2 run at every
/// start, and knowing its password gains nothing: a login for a user that does not exist fails
/// whatever the verification says.
pub const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$9ZHtlJBbrLrQ6Ty9kEGkFg$e4q6qEk9kWQkygcrISCr3AIxNfUFcJvpSN2A7GBnr9A";

pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify("s3cret", "not a hash"));
        // The decoy is a real hash with the parameters in force, so it costs what a real one does.
        let decoy = argon2::PasswordHash::new(super::DECOY_HASH).unwrap();
        let params = argon2::Params::try_from(&decoy).unwrap();
        let default = argon2::Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert!(!super::verify("s3cret", super::DECOY_HASH));
    }
}
