//! Applying metadata changes — Nova's server metadata, Cinder's volume, volume image and snapshot
//! metadata — with one command for them all. The change (clear, remove keys, set keys) is applied to the
//! record in the log, so two clients' concurrent changes compose instead of undoing each other.

use super::apply::{load, not_found, store};
use super::{Kind, Outcome, Refusal, StateError, SERVERS, SNAPSHOTS, VOLUMES};
use crate::model::compute::Server;
use crate::model::volume::{Snapshot, Volume};
use redb::WriteTransaction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whose metadata a change is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataOf {
    Server,
    Volume,
    Snapshot,
    /// A volume's image metadata (Cinder's `volume_image_metadata`).
    VolumeImage,
}

/// One change: all of it cleared first when `replace`, then `remove`d keys (refused when one is
/// absent), then `set` ones; refused when more than `max_items` would remain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataChange {
    pub replace: bool,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
    pub max_items: usize,
    /// Made only if the metadata's [`etag`] is still this (Cinder 3.15's `If-Match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<String>,
}

/// The entity tag of a metadata map: the MD5 of its JSON (keys in order), in hex.
pub fn etag(map: &BTreeMap<String, String>) -> String {
    use md5::Digest;
    let text = serde_json::to_string(map).unwrap_or_default();
    md5::Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl MetadataChange {
    /// The change applied to `map`; on a refusal `map` is left as it was.
    pub fn apply_to(&self, map: &mut BTreeMap<String, String>) -> Result<(), Refusal> {
        if let Some(want) = self.if_match.as_deref().filter(|w| *w != "*" && *w != etag(map)) {
            return Err(Refusal::Stale(format!("The metadata changed: its ETag is no longer {want}.")));
        }
        let mut next = if self.replace { BTreeMap::new() } else { map.clone() };
        for k in &self.remove {
            if next.remove(k).is_none() {
                return Err(Refusal::NotFound { kind: Kind::MetadataKey, id: k.clone() });
            }
        }
        next.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        if next.len() > self.max_items {
            return Err(Refusal::OverQuota(format!(
                "Quota exceeded for metadata_items: {} wanted, at most {} allowed.",
                next.len(),
                self.max_items
            )));
        }
        *map = next;
        Ok(())
    }
}

pub(super) fn apply(
    tx: &WriteTransaction,
    of: MetadataOf,
    id: &str,
    change: &MetadataChange,
    updated_at: u64,
) -> Result<Outcome, StateError> {
    macro_rules! edit {
        ($t:ty, $table:expr, $kind:expr) => {
            edit!($t, $table, $kind, metadata)
        };
        ($t:ty, $table:expr, $kind:expr, $field:ident) => {{
            let Some(mut r) = load::<$t>(tx, $table, id)? else { return Ok(Err(not_found($kind, id))) };
            if let Err(refused) = change.apply_to(&mut r.$field) {
                return Ok(Err(refused));
            }
            r.updated_at = updated_at;
            store(tx, $table, id, &r)?;
            Ok(Ok(()))
        }};
    }
    match of {
        MetadataOf::Server => edit!(Server, SERVERS, Kind::Server),
        MetadataOf::Volume => edit!(Volume, VOLUMES, Kind::Volume),
        MetadataOf::Snapshot => edit!(Snapshot, SNAPSHOTS, Kind::Snapshot),
        MetadataOf::VolumeImage => edit!(Volume, VOLUMES, Kind::Volume, image_metadata),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_compose_and_refusals_change_nothing() {
        let mut m: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into_iter().collect();
        let set = |k: &str| [(k.to_string(), "v".to_string())].into_iter().collect::<BTreeMap<_, _>>();
        let change = |replace, set, remove: &[&str]| MetadataChange {
            replace,
            set,
            remove: remove.iter().map(|s| s.to_string()).collect(),
            max_items: 2,
            if_match: None,
        };
        change(false, set("b"), &[]).apply_to(&mut m).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(change(false, set("c"), &[]).apply_to(&mut m), Err(Refusal::OverQuota(_))));
        assert!(matches!(change(false, set("c"), &["zz"]).apply_to(&mut m), Err(Refusal::NotFound { .. })));
        assert_eq!(m.len(), 2, "refusals changed nothing");
        change(false, set("c"), &["a"]).apply_to(&mut m).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b", "c"]);
        change(true, set("d"), &[]).apply_to(&mut m).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["d"]);
        // A conditional change holds only while the ETag does.
        let tag = etag(&m);
        let stale = MetadataChange { if_match: Some("0".repeat(32)), ..change(true, set("e"), &[]) };
        assert!(matches!(stale.apply_to(&mut m), Err(Refusal::Stale(_))));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["d"]);
        MetadataChange { if_match: Some(tag), ..change(true, set("e"), &[]) }.apply_to(&mut m).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["e"]);
    }
}
