//! Cinder's listing parameters: `sort` (`key[:dir],…`) or `sort_key`/`sort_dir` (default
//! `created_at:desc`), `marker` (an id; 404 when unknown, as Cinder), `limit` and `offset`; and the
//! `…_links` entry for the next page.

use super::super::error::ApiError;
use serde_json::{json, Value};
use std::cmp::Ordering;

/// A value a listing sorts by.
#[derive(PartialEq, PartialOrd)]
pub enum Key<'a> {
    Text(&'a str),
    Number(u64),
}

/// What a listed item offers to sorting and paging.
pub trait Listed {
    fn id(&self) -> &str;
    /// Its value for sort key `key`; `None` for a key Cinder does not sort by (400).
    fn key(&self, key: &str) -> Option<Key<'_>>;
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// The sort keys and directions asked for.
fn sort_spec(q: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, bool)>, ApiError> {
    let spec: Vec<(String, String)> = match (q("sort"), q("sort_key")) {
        (Some(s), _) => s
            .split(',')
            .map(|p| {
                let (k, d) = p.split_once(':').unwrap_or((p, "desc"));
                (k.trim().to_owned(), d.trim().to_owned())
            })
            .collect(),
        (None, Some(k)) => vec![(k, q("sort_dir").unwrap_or_else(|| "desc".into()))],
        (None, None) => vec![("created_at".into(), "desc".into())],
    };
    spec.into_iter()
        .map(|(k, d)| match d.as_str() {
            "asc" => Ok((k, false)),
            "desc" => Ok((k, true)),
            other => Err(bad(format!("Invalid sort direction: {other}"))),
        })
        .collect()
}

/// One page of `items` for `path` (e.g. `volumes/detail`, relative to the project's base).
pub fn page<T: Listed>(
    mut items: Vec<T>,
    q: &dyn Fn(&str) -> Option<String>,
    base: &str,
    path: &str,
) -> Result<(Vec<T>, Option<Value>), ApiError> {
    // Cinder's older name for `name`.
    let spec: Vec<(String, bool)> =
        sort_spec(q)?.into_iter().map(|(k, d)| (if k == "display_name" { "name".to_owned() } else { k }, d)).collect();
    for (k, _) in &spec {
        if items.first().is_some_and(|i| i.key(k).is_none()) || (items.is_empty() && !known(k)) {
            return Err(bad(format!("Invalid sort key: {k}")));
        }
    }
    items.sort_by(|a, b| {
        for (k, desc) in &spec {
            let o = a.key(k).partial_cmp(&b.key(k)).unwrap_or(Ordering::Equal);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id().cmp(b.id())
    });
    if let Some(marker) = q("marker") {
        let at = items
            .iter()
            .position(|i| i.id() == marker)
            .ok_or_else(|| ApiError::NotFound(format!("Marker {marker} could not be found.")))?;
        items.drain(..=at);
    }
    let number = |k: &str| -> Result<Option<usize>, ApiError> {
        q(k).map(|v| {
            v.parse::<usize>()
                .map_err(|_| bad(format!("Invalid input received: {k} = {v} is not a non-negative integer.")))
        })
        .transpose()
    };
    if let Some(offset) = number("offset")? {
        items.drain(..offset.min(items.len()));
    }
    let Some(limit) = number("limit")? else { return Ok((items, None)) };
    items.truncate(limit);
    // As Cinder: a full page links to the next (which may be empty).
    let next = items
        .last()
        .filter(|_| items.len() == limit)
        .map(|last| json!([{"rel": "next", "href": format!("{base}/{path}?limit={limit}&marker={}", last.id())}]));
    Ok((items, next))
}

/// Keys every listing sorts by (checked when there is nothing to ask).
fn known(k: &str) -> bool {
    matches!(k, "id" | "name" | "status" | "size" | "created_at" | "updated_at")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(&'static str, u64, &'static str);
    impl Listed for Item {
        fn id(&self) -> &str {
            self.0
        }
        fn key(&self, key: &str) -> Option<Key<'_>> {
            match key {
                "id" => Some(Key::Text(self.0)),
                "created_at" | "size" => Some(Key::Number(self.1)),
                "name" => Some(Key::Text(self.2)),
                _ => None,
            }
        }
    }

    fn ids(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| i.0).collect()
    }

    #[test]
    fn sorts_pages_and_refuses_bad_parameters() {
        let all = || vec![Item("a", 1, "z"), Item("b", 3, "y"), Item("c", 2, "y")];
        let q = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| (*v).to_owned())
        };
        let (p, next) = page(all(), &q(&[]), "B", "volumes").unwrap();
        assert_eq!((ids(&p), next), (vec!["b", "c", "a"], None), "newest first");
        let (p, _) = page(all(), &q(&[("sort", "name:asc,size:desc")]), "B", "volumes").unwrap();
        assert_eq!(ids(&p), ["b", "c", "a"]);
        let (p, next) = page(all(), &q(&[("sort_key", "id"), ("sort_dir", "asc"), ("limit", "1")]), "B", "v").unwrap();
        assert_eq!((ids(&p), next.unwrap()[0]["href"].as_str()), (vec!["a"], Some("B/v?limit=1&marker=a")));
        let (p, _) = page(all(), &q(&[("sort_key", "id"), ("sort_dir", "asc"), ("marker", "a")]), "B", "v").unwrap();
        assert_eq!(ids(&p), ["b", "c"]);
        let (p, next) = page(all(), &q(&[("limit", "3")]), "B", "v").unwrap();
        assert_eq!((p.len(), next.is_some()), (3, true), "a full page links on");
        let (p, next) = page(all(), &q(&[("limit", "4")]), "B", "v").unwrap();
        assert_eq!((p.len(), next), (3, None));
        let (p, _) = page(all(), &q(&[("sort_key", "display_name"), ("sort_dir", "asc")]), "B", "v").unwrap();
        assert_eq!(ids(&p), ["b", "c", "a"], "display_name is name");
        let (p, _) = page(all(), &q(&[("offset", "2")]), "B", "v").unwrap();
        assert_eq!(ids(&p), ["a"]);
        for (pairs, status) in [
            (&[("limit", "invalid")][..], 400),
            (&[("limit", "-1")][..], 400),
            (&[("sort_key", "invalid")][..], 400),
            (&[("sort", "name:sideways")][..], 400),
            (&[("marker", "nope")][..], 404),
        ] {
            let e = page(all(), &q(pairs), "B", "v").err().unwrap();
            assert_eq!(e.status().as_u16(), status, "{pairs:?}");
        }
        assert!(page(Vec::<Item>::new(), &q(&[("sort_key", "invalid")]), "B", "v").is_err());
    }
}
