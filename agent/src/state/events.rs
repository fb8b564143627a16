//! Writing notifications while a command applies: numbered from the `event_seq` counter in the
//! cloud table, the last [`KEEP`] kept (older ones are dropped as new ones come).

use super::apply::store;
use super::{StateError, CLOUD, EVENTS};
use crate::model::event::Notification;
use redb::{ReadableTable, WriteTransaction};

/// How many notifications the state keeps.
pub const KEEP: u64 = 10_000;
const SEQ: &str = "event_seq";

/// The table key of notification `seq` (zero-padded, so keys sort as numbers).
pub fn key(seq: u64) -> String {
    format!("{seq:020}")
}

/// Appends a notification.
pub(super) fn emit(
    tx: &WriteTransaction,
    event_type: &str,
    publisher_id: &str,
    timestamp: u64,
    payload: serde_json::Value,
) -> Result<(), StateError> {
    let seq = {
        let cloud = tx.open_table(CLOUD)?;
        let last = cloud.get(SEQ)?.and_then(|v| v.value().parse::<u64>().ok()).unwrap_or(0);
        last + 1
    };
    tx.open_table(CLOUD)?.insert(SEQ, seq.to_string().as_str())?;
    let n = Notification { seq, event_type: event_type.into(), publisher_id: publisher_id.into(), timestamp, payload };
    store(tx, EVENTS, &key(seq), &n)?;
    if seq > KEEP {
        tx.open_table(EVENTS)?.remove(key(seq - KEEP).as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Store;

    #[test]
    fn notifications_are_numbered_and_the_oldest_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let tx = s.db().begin_write().unwrap();
        for i in 0..KEEP + 3 {
            emit(&tx, "compute.instance.update", "compute.n1", i, serde_json::json!({"i": i})).unwrap();
        }
        tx.commit().unwrap();
        let v = s.view().unwrap();
        let first = v.events_after(0, 2).unwrap();
        assert_eq!(first.iter().map(|n| n.seq).collect::<Vec<_>>(), [4, 5], "1 to 3 were dropped");
        let tail = v.events_after(KEEP + 1, 10).unwrap();
        assert_eq!(tail.iter().map(|n| n.seq).collect::<Vec<_>>(), [KEEP + 2, KEEP + 3]);
        assert_eq!(tail[1].payload["i"], KEEP + 2);
        assert!(v.events_after(KEEP + 3, 10).unwrap().is_empty());
    }
}
