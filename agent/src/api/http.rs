//! HTTP plumbing shared by every service: bounded body reading, JSON in and out, query strings.

use super::error::ApiError;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;

/// Largest request body accepted for JSON APIs.
pub const MAX_JSON_BODY: usize = 1 << 20;

pub use crate::transport::{file_body, stream_file, whole, Body};

/// How much of an over-limit body is read and thrown away before answering 413. Closing a
/// connection with unread data makes the kernel send RST, which can destroy the 413 before the
/// client reads it; past this much the client is not worth the bandwidth.
const MAX_DRAIN: usize = 16 << 20;

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let read_err = |e: hyper::Error| ApiError::BadRequest(format!("could not read the request body: {e}"));
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(read_err)?.into_data() else { continue };
        seen += data.len();
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > limit + MAX_DRAIN {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(buf.freeze())
}

/// Parses a JSON body into `T`; syntax and type errors are 400 with serde's description.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("The request body is empty; a JSON object is required.".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("Invalid JSON in request body: {e}")))
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(whole(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(whole(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Decodes `%XX` escapes and `+` in a query component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as decoded pairs, in order. openstacksdk sends unset filters as the
/// literal `None` (`user.id=None`); those pairs are dropped, as the real services do.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .filter(|(_, v)| v != "None")
        .collect()
}

/// A UTC timestamp as OpenStack writes it: `2026-11-28T21:00:00Z`, or with `.000000` before
/// the `Z` (Keystone's tokens).
pub fn timestamp(secs: u64, micros: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        if micros { ".000000" } else { "" }
    )
}

/// Unix seconds of an ISO 8601 time as OpenStack's filters take it (`changes-since`):
/// `2026-11-28T21:00:00Z`, with optional fractions, a `±HH:MM` offset, or a space for the `T`.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    parse_timestamp_us(s).map(|us| us / 1_000_000)
}

/// A time as Python's `datetime.isoformat()` writes a naive UTC one (Keystone's application
/// credentials): `2026-11-28T21:00:00.123456`, the fraction left out when it is zero.
pub fn isoformat_us(us: u64) -> String {
    let t = timestamp(us / 1_000_000, false);
    let t = t.trim_end_matches('Z');
    match us % 1_000_000 {
        0 => t.to_owned(),
        f => format!("{t}.{f:06}"),
    }
}

/// Unix microseconds of an ISO 8601 time, as [`parse_timestamp`] reads it.
pub fn parse_timestamp_us(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b).and_then(|t| t.parse::<u32>().ok());
    let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") || !matches!(s.get(10..11), Some("T" | " ")) {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    let t = time::Time::from_hms(u8::try_from(h).ok()?, u8::try_from(mi).ok()?, u8::try_from(sec).ok()?).ok()?;
    let mut rest = s.get(19..)?;
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.len() - frac.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let six: String = frac[..digits].chars().chain(std::iter::repeat('0')).take(6).collect();
        micros = six.parse::<u64>().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "" | "Z" => 0,
        o => {
            let sign = match o.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (oh, om) = o.get(1..)?.split_once(':').unwrap_or((o.get(1..3)?, o.get(3..).unwrap_or("0")));
            sign * (i64::from(oh.parse::<u32>().ok()?) * 3600 + i64::from(om.parse::<u32>().ok()?) * 60)
        }
    };
    let secs = time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp() - offset;
    Some(u64::try_from(secs).ok()? * 1_000_000 + micros)
}

/// A listing's body, `{key: items}`, with `{key}_links` when there is a next page (as Nova,
/// Cinder and Neutron give it).
pub fn list_body(key: &str, items: Vec<serde_json::Value>, next: Option<serde_json::Value>) -> serde_json::Value {
    let mut body = serde_json::json!({ key: items });
    if let Some(next) = next {
        body[format!("{key}_links")] = next;
    }
    body
}

/// A query flag: present with no value, or a true-ish value in any case.
pub fn is_true(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1" || v.eq_ignore_ascii_case("yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query_pairs(Some("name=a%20b&x=1+2&flag&user.id=None&bad=%zz&end=%4"));
        assert_eq!(q[0], ("name".into(), "a b".into()));
        assert_eq!(q[1], ("x".into(), "1 2".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert_eq!(q[3], ("bad".into(), "%zz".into()));
        assert_eq!(q[4], ("end".into(), "%4".into()));
        assert_eq!(q.len(), 5, "the None-valued filter is dropped");
        assert!(query_pairs(None).is_empty());
        assert!(is_true("True") && is_true("") && !is_true("false"));
        assert_eq!(parse_timestamp("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_timestamp_us("1970-01-01T00:01:00.5"), Some(60_500_000));
        assert_eq!(parse_timestamp_us("2026-12-07T23:45:00.123456"), Some(1_796_687_100_123_456));
        assert_eq!(isoformat_us(1_796_687_100_123_456), "2026-12-07T23:45:00.123456");
        assert_eq!(isoformat_us(60_000_000), "1970-01-01T00:01:00", "no fraction when it is zero, as Python");
        assert_eq!(parse_timestamp("2026-11-28T21:00:00.123456Z"), parse_timestamp("2026-11-28 21:00:00"));
        assert_eq!(parse_timestamp("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00-01:00"), Some(3600));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-28T25:00:00Z", "2026-11-28T21:00:00+xx"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
