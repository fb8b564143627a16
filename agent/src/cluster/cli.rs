//! `cairn token create|list|revoke` and `cairn node list|probe|remove`: ask a node's API, authenticating as
//! the `openstack` client does (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`,
//! `OS_CACERT`). `token create` prints only the token, so it can be passed on as it is.

use crate::client::{Client, Conn};
use hyper::Method;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a join token and print it.
    Create {
        /// How long it is valid: seconds, or with a unit (90s, 15m, 2h).
        #[arg(long, default_value = "15m")]
        expires: String,
    },
    /// List join tokens (never their secrets).
    List,
    /// Revoke a join token by id.
    Revoke { id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeCmd {
    /// The cluster's nodes: id, name, API address, roles, raft role, last report, probe.
    List,
    /// Remove a node for good: out of raft, its certificate refused by every peer.
    Remove { id: u64 },
    /// Have a node probe its host now and print what it found (as `cairn probe` on it).
    Probe {
        id: u64,
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
}

/// Why a duration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like 900, 90s, 15m or 2h")]
    NotANumber(String),
    #[error("{0:?}: the unit is s, m or h")]
    Unit(String),
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// `15m` → 900; plain numbers are seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| DurationError::NotANumber(text.into()))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(DurationError::Unit(text.into())),
    };
    n.checked_mul(scale).ok_or_else(|| DurationError::TooLong(text.into()))
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("{name} is not set (the same settings as the openstack client)").into())
}

/// A connection to the API of `OS_AUTH_URL` and a token for the `OS_*` user.
async fn session() -> Result<(Conn, String), BoxError> {
    let addr = crate::check::addr_of(&env("OS_AUTH_URL")?)?;
    let ca = std::fs::read_to_string(env("OS_CACERT")?)?;
    let mut conn = Client::new(addr, &ca)?.connect().await?;
    let project = std::env::var("OS_PROJECT_NAME").unwrap_or_else(|_| "admin".into());
    let token = conn
        .login(&env("OS_USERNAME")?, &env("OS_PASSWORD")?, &project)
        .await?
        .ok_or("the login was refused (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME)")?;
    Ok((conn, token))
}

/// The answer's JSON, or the API's error message.
fn answer(r: crate::client::Resp) -> Result<serde_json::Value, BoxError> {
    if !(200..300).contains(&r.status) {
        let msg = r.json()["error"]["message"].as_str().map(str::to_owned);
        return Err(msg.unwrap_or_else(|| format!("HTTP {}", r.status)).into());
    }
    Ok(r.json())
}

pub fn nodes(cmd: NodeCmd) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (mut conn, token) = session().await?;
        let auth = [("x-auth-token", token.as_str())];
        match cmd {
            NodeCmd::List => {}
            NodeCmd::Remove { id } => {
                answer(conn.request(Method::DELETE, &format!("/cairn/v1/nodes/{id}"), &auth, None).await?)?;
                return Ok(());
            }
            NodeCmd::Probe { id, json } => {
                let j = answer(conn.request(Method::GET, &format!("/cairn/v1/nodes/{id}/probe"), &auth, None).await?)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&j["probe"])?);
                } else {
                    let probe: crate::host::NodeProbe = serde_json::from_value(j["probe"].clone())?;
                    print!("{}", crate::host::render_table(&probe.facts));
                    let d = &probe.data_dir;
                    println!(
                        "Data dir     {} ({} MiB free of {} MiB){}",
                        d.path,
                        d.available_bytes >> 20,
                        d.size_bytes >> 20,
                        if d.in_memory { ", IN MEMORY ONLY" } else { "" }
                    );
                }
                return Ok(());
            }
        }
        let j = answer(conn.request(Method::GET, "/cairn/v1/nodes", &auth, None).await?)?;
        println!("{:<4}  {:<16}  {:<22}  {:<18}  {:<9}  {:<4}  probe", "id", "name", "api", "roles", "raft", "up");
        for n in j["nodes"].as_array().cloned().unwrap_or_default() {
            let roles: Vec<&str> =
                n["roles"].as_array().map(|r| r.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
            let p = &n["probe"];
            println!(
                "{:<4}  {:<16}  {:<22}  {:<18}  {:<9}  {:<4}  {} CPUs ({}), {} MiB, virtualization {}, guests {}",
                n["id"],
                n["name"].as_str().unwrap_or_default(),
                n["api_addr"].as_str().unwrap_or_default(),
                if roles.is_empty() { "-".to_owned() } else { roles.join(",") },
                n["raft_role"].as_str().unwrap_or_default(),
                if n["up"] == true { "yes" } else { "no" },
                p["cpus"],
                p["cpu_model"].as_str().unwrap_or_default(),
                p["memory_mb"],
                p["virtualization"].as_str().unwrap_or_default(),
                p["accel"].as_str().unwrap_or_default(),
            );
        }
        Ok(())
    })
}

pub fn run(cmd: TokenCmd) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (mut conn, token) = session().await?;
        let h = [("x-auth-token", token.as_str())];
        let (method, path, body) = match &cmd {
            TokenCmd::Create { expires } => {
                let secs = parse_duration(expires)?;
                let body = serde_json::json!({"token": {"expires_in": secs}});
                (Method::POST, "/cairn/v1/tokens".to_owned(), Some(body.to_string().into_bytes()))
            }
            TokenCmd::List => (Method::GET, "/cairn/v1/tokens".to_owned(), None),
            TokenCmd::Revoke { id } => (Method::DELETE, format!("/cairn/v1/tokens/{id}"), None),
        };
        let j = answer(conn.request(method, &path, &h, body).await?)?;
        match cmd {
            TokenCmd::Create { .. } => {
                println!("{}", j["token"]["token"].as_str().ok_or("the answer holds no token")?);
            }
            TokenCmd::List => {
                println!("{:<32}  {:<20}  {:<20}  state", "id", "created", "expires");
                for t in j["tokens"].as_array().cloned().unwrap_or_default() {
                    let state = match (&t["used_by"], t["revoked"].as_bool()) {
                        (_, Some(true)) => "revoked".to_owned(),
                        (serde_json::Value::String(n), _) => format!("used by {n}"),
                        _ => "unused".to_owned(),
                    };
                    let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
                    println!("{:<32}  {:<20}  {:<20}  {state}", s("id"), s("created_at"), s("expires_at"));
                }
            }
            TokenCmd::Revoke { .. } => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("900"), Ok(900));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}
