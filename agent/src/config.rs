//! Agent settings: `/etc/cairn/config.toml` (every field has a default; an unknown field is an
//! error naming it), then command-line flags, then `CAIRN_ADMIN_PASSWORD` from the environment.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/cairn/config.toml";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTPS API.
    pub listen: SocketAddr,
    /// Where state, keys and certificates live.
    pub data_dir: PathBuf,
    /// Initial admin password; random (stored in `<data_dir>/admin-password`) when unset.
    pub admin_password: Option<String>,
    /// Token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Enable nested virtualization when loading kvm_intel/kvm_amd.
    pub nested: bool,
    /// Base URL clients reach the API at (for links and the catalog); from the Host header
    /// when unset.
    pub public_url: Option<String>,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: String,
    /// Seconds the KVM run test may take before the device is judged to hang guests.
    pub kvm_test_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            data_dir: "/var/lib/cairn".into(),
            admin_password: None,
            token_ttl_secs: 3600,
            nested: true,
            public_url: None,
            log_level: "info".into(),
            kvm_test_timeout_secs: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.message().to_owned() })?;
        c.validate()?;
        Ok(c)
    }

    /// Loads `path`; a missing file is fine only when it is the default path.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=7 * 86_400).contains(&self.token_ttl_secs) {
            return Err(ConfigError::Invalid(format!("token_ttl_secs {} is outside 60..=604800", self.token_ttl_secs)));
        }
        if self.log_level.parse::<log::LevelFilter>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "log_level {:?} is not one of error, warn, info, debug, trace",
                self.log_level
            )));
        }
        if let Some(u) = &self.public_url {
            if !u.starts_with("https://") {
                return Err(ConfigError::Invalid(format!("public_url {u:?} must start with https://")));
            }
        }
        Ok(())
    }

    pub fn level(&self) -> log::LevelFilter {
        self.log_level.parse().unwrap_or(log::LevelFilter::Info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        struct Case {
            text: &'static str,
            err: Option<&'static str>,
        }
        let cases = [
            Case { text: "", err: None },
            Case { text: "listen = \"127.0.0.1:8443\"\ndata_dir = \"/tmp/x\"\nnested = false", err: None },
            Case { text: "lissten = \"127.0.0.1:1\"", err: Some("lissten") },
            Case { text: "listen = 5", err: Some("invalid type") },
            Case { text: "token_ttl_secs = 1", err: Some("token_ttl_secs") },
            Case { text: "log_level = \"loud\"", err: Some("log_level") },
            Case { text: "public_url = \"http://x\"", err: Some("https") },
        ];
        for c in cases {
            let r = Config::parse(c.text, Path::new("t.toml"));
            match (r, c.err) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{:?}: {e}", c.text),
                (r, want) => panic!("{:?}: got {r:?}, wanted error {want:?}", c.text),
            }
        }
        let c = Config::parse("listen = \"127.0.0.1:8443\"", Path::new("t")).unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cairn"));
        assert!(Config::load(Some(Path::new("/nonexistent/cairn.toml"))).is_err());
    }
}
