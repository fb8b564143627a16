//! Request bodies: Neutron's attribute rules, checked key by key.

use super::super::error::ApiError;
use super::super::http::parse_json;
use crate::model::network::{parse_ip, Cidr, HostRoute};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// One resource object of a request body (`{"network": {...}}` → the inner object).
pub(super) struct Attrs {
    map: Map<String, Value>,
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("Invalid input for operation: {}", msg.into()))
}

impl Attrs {
    pub(super) fn parse(bytes: &[u8], key: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut v: Map<String, Value> = parse_json(bytes)?;
        let Some(Value::Object(map)) = v.remove(key) else {
            return Err(ApiError::BadRequest(format!("Resource body required: an object under \"{key}\".")));
        };
        Self::of(map, allowed)
    }

    /// A resource object's attributes, each one of `allowed`.
    pub(super) fn of(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
        if !unknown.is_empty() {
            return Err(ApiError::BadRequest(format!("Unrecognized attribute(s) '{}'", unknown.join(", "))));
        }
        Ok(Self { map })
    }

    pub(super) fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    pub(super) fn string(&self, k: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > 255 {
                    return Err(bad(format!("'{k}' is longer than 255 characters.")));
                }
                Ok(Some(s.clone()))
            }
            Some(Value::Null) if k == "name" || k == "description" => Ok(Some(String::new())),
            Some(other) => Err(bad(format!("'{other}' is not a valid string for {k}."))),
        }
    }

    pub(super) fn boolean(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(bad(format!("'{other}' cannot be converted to boolean for {k}."))),
        }
    }

    /// An integer, also as a string (the client sends `provider:segmentation_id` as "100").
    pub(super) fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| bad(format!("'{n}' is not an integer for {k}.")))
            }
            Some(Value::String(s)) => {
                s.trim().parse().map(Some).map_err(|_| bad(format!("'{s}' is not an integer for {k}.")))
            }
            Some(other) => Err(bad(format!("'{other}' is not an integer for {k}."))),
        }
    }

    pub(super) fn ip(&self, k: &str) -> Result<Option<Option<IpAddr>>, ApiError> {
        match self.map.get(k) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(parse_ip(s).map_err(|e| bad(e.to_string()))?))),
            Some(other) => Err(bad(format!("'{other}' is not a valid IP address."))),
        }
    }

    pub(super) fn list(&self, k: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(bad(format!("'{other}' is not a list for {k}."))),
        }
    }

    pub(super) fn ip_list(&self, k: &str) -> Result<Option<Vec<IpAddr>>, ApiError> {
        let Some(items) = self.list(k)? else { return Ok(None) };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => parse_ip(s).map_err(|e| bad(e.to_string())),
                other => Err(bad(format!("'{other}' is not a valid IP address."))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `host_routes`: a list of `{"destination": CIDR, "nexthop": IP}`.
    pub(super) fn host_routes(&self) -> Result<Option<Vec<HostRoute>>, ApiError> {
        let Some(items) = self.list("host_routes")? else { return Ok(None) };
        items
            .iter()
            .map(|r| {
                let destination: Cidr = str_of(&r["destination"], "host_routes destination")?
                    .parse()
                    .map_err(|e: crate::model::network::NetModelError| bad(e.to_string()))?;
                let nexthop =
                    parse_ip(&str_of(&r["nexthop"], "host_routes nexthop")?).map_err(|e| bad(e.to_string()))?;
                Ok(HostRoute { destination, nexthop })
            })
            .collect::<Result<Vec<_>, ApiError>>()
            .map(Some)
    }

    pub(super) fn project(&self) -> Result<Option<String>, ApiError> {
        Ok(self.string("project_id")?.or(self.string("tenant_id")?))
    }

    /// Attributes accepted only with their default (empty or false) value.
    pub(super) fn only_default(&self, keys: &[&str]) -> Result<(), ApiError> {
        for k in keys {
            match self.map.get(*k) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(Value::Object(o)) if o.is_empty() => {}
                Some(v) => return Err(bad(format!("{k} = {v} is not supported by this cloud."))),
            }
        }
        Ok(())
    }
}

pub(super) fn str_of(v: &Value, what: &str) -> Result<String, ApiError> {
    v.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what} must be a string.")))
}
