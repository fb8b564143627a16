//! openraft glue: the log and vote kept in redb, the state machine applying [`Command`]s to the
//! tables in [`super`], snapshots as table dumps, and [`Replicated`], the handle the rest of the
//! agent proposes commands through.
//!
//! Durability: the log and vote live in a database of their own ([`Store`]'s `log`); a log
//! append commits with `Durability::Immediate` (fsync) before openraft is told it is flushed, so
//! an acknowledged write is on disk. State-machine commits are atomic but fsynced only about once
//! a second ([`SM_SYNC_EVERY`]) and before a snapshot lets the log be purged; after a crash the
//! tables are as of their last fsync, with the matching `last_applied`, and openraft re-applies
//! the rest from the log, so each entry reaches the tables exactly once.
//!
//! The peer transport is the cluster module's (mutual TLS); [`NoPeers`] is a lone node's.
//! A command proposed on a follower travels to the leader ([`Forward`]); the follower answers
//! once it has applied the entry itself, so a client that writes through a node then reads
//! from it sees its write. [`Replicated::linearize`] makes a read linearizable: the node waits
//! until it has applied the leader's read index.

// openraft's storage traits return its StorageError by value; the helpers here must match.
#![allow(clippy::result_large_err)]

use super::{apply::apply, Command, Outcome, StateError, Store, BLOB_TABLES, REVOKED, STRING_TABLES, UNIT_TABLES};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RPCError, RaftError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, ChangeMembers, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftNetwork,
    RaftNetworkFactory, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::{Duration, Instant};

openraft::declare_raft_types!(
    /// Cairn's raft types: batches of commands in, an outcome per command out.
    pub TypeConfig:
        D = Batch,
        R = Vec<Outcome>,
);

/// What one raft entry carries: commands applied in order, each with its own outcome. The
/// commands that arrive while earlier ones are being logged share an entry, and so an fsync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<Command>);

impl<'de> Deserialize<'de> for Batch {
    /// A batch, or one bare command (entries logged before batching).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Many(Vec<Command>),
            One(Box<Command>),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Many(v) => Batch(v),
            Repr::One(c) => Batch(vec![*c]),
        })
    }
}

/// Most commands one entry carries.
const MAX_BATCH_COMMANDS: usize = 1024;

type Waiter = tokio::sync::oneshot::Sender<Result<(Outcome, u64), Local>>;

/// Gathers proposed commands into batches and writes each as one entry, one entry at a time:
/// commands gather while an entry is logged and applied, and the next entry takes them all
/// (measured: 2 or 3 entries in flight split the same load into smaller entries and wrote
/// 10–20% fewer commands a second).
async fn batch_loop(raft: Raft, mut rx: tokio::sync::mpsc::UnboundedReceiver<(Command, Waiter)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (cmds, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
        match raft.client_write(Batch(cmds)).await {
            Ok(resp) => {
                let index = resp.log_id.index;
                for (w, outcome) in waiters.into_iter().zip(resp.data) {
                    let _ = w.send(Ok((outcome, index)));
                }
            }
            Err(e) => {
                let local = Local::from_write(e);
                for w in waiters {
                    let _ = w.send(Err(local.clone()));
                }
            }
        }
    }
}

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
type StErr = StorageError<NodeId>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const K_VOTE: &str = "vote";
const K_PURGED: &str = "last_purged";
const K_COMMITTED: &str = "committed";
const K_APPLIED: &str = "sm_applied";
const K_MEMBERSHIP: &str = "sm_membership";
const K_SNAPSHOT: &str = "snapshot";

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StateError> {
    tx.open_table(LOG)?;
    tx.open_table(META)?;
    Ok(())
}

/// Moves a raft log and vote that earlier versions kept in the state database `state` into the
/// log database `log`: copied and fsynced there first (unless `log` already holds a log, from an
/// interrupted move), then deleted from `state`.
pub(crate) fn move_log(state: &Database, log: &Database) -> Result<(), StateError> {
    let read = state.begin_read()?;
    let (old_log, old_meta) = (read.open_table(LOG)?, read.open_table(META)?);
    let old_keys = [K_VOTE, K_PURGED].into_iter().filter_map(|k| old_meta.get(k).transpose()).count();
    if old_log.is_empty()? && old_keys == 0 {
        return Ok(());
    }
    let fresh = {
        let r = log.begin_read()?;
        r.open_table(LOG)?.is_empty()? && r.open_table(META)?.get(K_VOTE)?.is_none()
    };
    if fresh {
        write(log, Durability::Immediate, |tx| {
            let (mut t, mut m) = (tx.open_table(LOG)?, tx.open_table(META)?);
            for row in old_log.iter()? {
                let (k, v) = row?;
                t.insert(k.value(), v.value())?;
            }
            for k in [K_VOTE, K_PURGED] {
                if let Some(v) = old_meta.get(k)? {
                    m.insert(k, v.value())?;
                }
            }
            Ok(())
        })?;
    }
    drop((old_log, old_meta, read));
    write(state, Durability::Immediate, |tx| {
        tx.open_table(LOG)?.retain(|_, _| false)?;
        let mut m = tx.open_table(META)?;
        m.remove(K_VOTE)?;
        m.remove(K_PURGED)?;
        Ok(())
    })
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// Runs blocking redb work off the async worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StErr> + Send + 'static) -> Result<T, StErr> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StErr::from(StorageIOError::<NodeId>::read(io_err(e))))?
}

fn meta_get<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StErr> {
    let read = || meta_read(&db.begin_read()?, key);
    read().map_err(|e| StorageIOError::read(io_err(e)).into())
}

fn meta_read<T: DeserializeOwned>(tx: &redb::ReadTransaction, key: &str) -> Result<Option<T>, StateError> {
    match tx.open_table(META)?.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

fn meta_put<T: Serialize>(tx: &WriteTransaction, key: &str, value: &T) -> Result<(), StateError> {
    tx.open_table(META)?.insert(key, serde_json::to_vec(value)?.as_slice())?;
    Ok(())
}

/// Commits `f`'s writes with the given durability.
fn write(
    db: &Database,
    durability: Durability,
    f: impl FnOnce(&WriteTransaction) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(durability).map_err(|e| {
        StateError::Db(redb::Error::from(redb::StorageError::from(std::io::Error::other(e.to_string()))))
    })?;
    f(&tx)?;
    tx.commit()?;
    Ok(())
}

/// The raft log and vote, in redb. Appends go to one writer thread that commits everything
/// queued since its last commit in one fsynced transaction, then tells openraft each batch is
/// flushed: many clients' writes share an fsync, and none is acknowledged before it. Entries
/// waiting for the writer are served to readers from memory.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    queue: std::sync::mpsc::Sender<LogOp>,
    pending: Arc<std::sync::Mutex<BTreeMap<u64, Entry<TypeConfig>>>>,
}

/// Work for the log writer, done in the order queued.
enum LogOp {
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    /// The committed log id: recorded with the next append, or alone once the log is idle.
    Committed(LogId<NodeId>),
    /// Deletes the log from the index on (truncate) or up to and including it (purge).
    Truncate(u64, tokio::sync::oneshot::Sender<Result<(), StateError>>),
    Purge(LogId<NodeId>, tokio::sync::oneshot::Sender<Result<(), StateError>>),
}

/// Most entries one log commit takes.
const MAX_BATCH: usize = 4096;
/// How long a committed log id waits for an append to carry it before it is written alone.
const COMMITTED_IDLE: Duration = Duration::from_millis(50);

impl LogStore {
    fn new(db: Arc<Database>) -> Self {
        let (queue, rx) = std::sync::mpsc::channel();
        let pending = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let (wdb, wpending) = (db.clone(), pending.clone());
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || log_writer(&wdb, &rx, &wpending))
            .map_err(|e| log::error!("starting the raft log writer: {e}"))
            .ok();
        Self { db, queue, pending }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `op` for the writer.
    fn send(&self, op: LogOp) -> Result<(), StErr> {
        self.queue.send(op).map_err(|_| writer_gone())
    }

    /// Queues `op` and waits for the writer to do it.
    async fn run(
        &self,
        op: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), StateError>>) -> LogOp,
    ) -> Result<(), StErr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(op(tx))?;
        rx.await.map_err(|_| writer_gone())?.map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}

fn writer_gone() -> StErr {
    StorageIOError::write_logs(io_err(std::io::Error::other("the log writer stopped"))).into()
}

/// The log writer: batches queued appends into one fsynced commit each.
fn log_writer(
    db: &Database,
    rx: &std::sync::mpsc::Receiver<LogOp>,
    pending: &std::sync::Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
) {
    let mut next = None;
    // A committed log id not yet written.
    let mut committed = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None if committed.is_some() => match rx.recv_timeout(COMMITTED_IDLE) {
                Ok(op) => op,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(id) = committed.take() {
                        if let Err(e) = write(db, Durability::Immediate, |tx| meta_put(tx, K_COMMITTED, &id)) {
                            log::warn!("recording the committed log id: {e}");
                        }
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        match op {
            LogOp::Committed(id) => committed = Some(id),
            LogOp::Append(entries, callback) => {
                let mut batch = vec![(entries, callback)];
                let mut count = batch[0].0.len();
                while count < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(LogOp::Append(e, c)) => {
                            count += e.len();
                            batch.push((e, c));
                        }
                        Ok(LogOp::Committed(id)) => committed = Some(id),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let written = write(db, Durability::Immediate, |tx| {
                    let mut t = tx.open_table(LOG)?;
                    for e in batch.iter().flat_map(|(e, _)| e) {
                        t.insert(e.log_id.index, serde_json::to_vec(e)?.as_slice())?;
                    }
                    if let Some(id) = &committed {
                        meta_put(tx, K_COMMITTED, id)?;
                    }
                    Ok(())
                });
                if written.is_ok() {
                    committed = None;
                    let mut p = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for e in batch.iter().flat_map(|(e, _)| e) {
                        if p.get(&e.log_id.index).is_some_and(|q| q.log_id == e.log_id) {
                            p.remove(&e.log_id.index);
                        }
                    }
                }
                for (_, callback) in batch {
                    let res = written.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()));
                    callback.log_io_completed(res);
                }
            }
            LogOp::Truncate(index, done) => {
                pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|i, _| *i < index);
                let _ = done.send(write(db, Durability::Immediate, |tx| {
                    tx.open_table(LOG)?.retain_in(index.., |_, _| false)?;
                    Ok(())
                }));
            }
            LogOp::Purge(log_id, done) => {
                pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|i, _| *i > log_id.index);
                let _ = done.send(write(db, Durability::Immediate, |tx| {
                    meta_put(tx, K_PURGED, &log_id)?;
                    tx.open_table(LOG)?.retain_in(..=log_id.index, |_, _| false)?;
                    Ok(())
                }));
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        let db = self.db.clone();
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out: BTreeMap<u64, Entry<TypeConfig>> = blocking(move || {
            let read = || -> Result<BTreeMap<u64, Entry<TypeConfig>>, StateError> {
                let tx = db.begin_read()?;
                let t = tx.open_table(LOG)?;
                let mut out = BTreeMap::new();
                for row in t.range::<u64>((start, end))? {
                    let (k, v) = row?;
                    out.insert(k.value(), serde_json::from_slice(v.value())?);
                }
                Ok(out)
            };
            read().map_err(|e| StorageIOError::read_logs(io_err(e)).into())
        })
        .await?;
        // Entries the writer has not committed yet (newer than what is on disk).
        for (i, e) in self.pending().range((start, end)) {
            out.insert(*i, e.clone());
        }
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StErr> {
        let db = self.db.clone();
        let on_disk = blocking(move || {
            let last_purged_log_id: Option<LogId<NodeId>> = meta_get(&db, K_PURGED)?;
            let read = || -> Result<Option<LogId<NodeId>>, StateError> {
                let tx = db.begin_read()?;
                let t = tx.open_table(LOG)?;
                let last = t.last()?;
                match last {
                    Some((_, v)) => Ok(Some(serde_json::from_slice::<Entry<TypeConfig>>(v.value())?.log_id)),
                    None => Ok(None),
                }
            };
            let last = read().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
        })
        .await?;
        let queued = self.pending().values().next_back().map(|e| e.log_id);
        Ok(LogState { last_log_id: queued.or(on_disk.last_log_id), ..on_disk })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StErr> {
        let (db, vote) = (self.db.clone(), *vote);
        blocking(move || {
            write(&db, Durability::Immediate, |tx| meta_put(tx, K_VOTE, &vote))
                .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StErr> {
        let db = self.db.clone();
        blocking(move || meta_get(&db, K_VOTE)).await
    }

    /// Queued, not awaited: a committed log id lost in a crash only means re-applying from an
    /// earlier one, once a leader commits again.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StErr> {
        if let Some(id) = committed {
            self.send(LogOp::Committed(id))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StErr> {
        let db = self.db.clone();
        blocking(move || meta_get(&db, K_COMMITTED)).await
    }

    /// Queues the entries for the writer and returns: openraft learns they are durable from
    /// `callback`, after the fsync.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        self.pending().extend(entries.iter().map(|e| (e.log_id.index, e.clone())));
        self.send(LogOp::Append(entries, callback))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StErr> {
        self.run(|done| LogOp::Truncate(log_id.index, done)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StErr> {
        self.run(|done| LogOp::Purge(log_id, done)).await
    }
}

/// Every state table, dumped for a snapshot.
#[derive(Default, Serialize, Deserialize)]
struct Dump {
    blobs: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    strings: BTreeMap<String, Vec<(String, String)>>,
    units: BTreeMap<String, Vec<String>>,
    revoked: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn dump(tx: &redb::ReadTransaction) -> Result<Dump, StateError> {
    let mut d = Dump::default();
    for t in BLOB_TABLES {
        let table = tx.open_table(t)?;
        let rows = table.iter()?.map(|r| r.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())));
        d.blobs.insert(t.to_string(), rows.collect::<Result<_, _>>()?);
    }
    for t in STRING_TABLES {
        let table = tx.open_table(t)?;
        let rows = table.iter()?.map(|r| r.map(|(k, v)| (k.value().to_owned(), v.value().to_owned())));
        d.strings.insert(t.to_string(), rows.collect::<Result<_, _>>()?);
    }
    for t in UNIT_TABLES {
        let table = tx.open_table(t)?;
        let rows = table.iter()?.map(|r| r.map(|(k, _)| k.value().to_owned()));
        d.units.insert(t.to_string(), rows.collect::<Result<_, _>>()?);
    }
    let revoked = tx.open_table(REVOKED)?;
    d.revoked = revoked.iter()?.map(|r| r.map(|(k, v)| (k.value().to_owned(), v.value()))).collect::<Result<_, _>>()?;
    Ok(d)
}

fn restore(tx: &WriteTransaction, d: &Dump) -> Result<(), StateError> {
    for t in BLOB_TABLES {
        let mut table = tx.open_table(t)?;
        table.retain(|_, _| false)?;
        for (k, v) in d.blobs.get(&t.to_string()).into_iter().flatten() {
            table.insert(k.as_str(), v.as_slice())?;
        }
    }
    for t in STRING_TABLES {
        let mut table = tx.open_table(t)?;
        table.retain(|_, _| false)?;
        for (k, v) in d.strings.get(&t.to_string()).into_iter().flatten() {
            table.insert(k.as_str(), v.as_str())?;
        }
    }
    for t in UNIT_TABLES {
        let mut table = tx.open_table(t)?;
        table.retain(|_, _| false)?;
        for k in d.units.get(&t.to_string()).into_iter().flatten() {
            table.insert(k.as_str(), ())?;
        }
    }
    let mut table = tx.open_table(REVOKED)?;
    table.retain(|_, _| false)?;
    for (k, v) in &d.revoked {
        table.insert(k.as_str(), *v)?;
    }
    Ok(())
}

/// The state machine: commands applied to the redb tables.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    /// Bumped after every applied batch, for watchers of the state (the network agent).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// When the tables were last fsynced.
    synced: Arc<std::sync::Mutex<Instant>>,
    /// The store's identity epoch, bumped after a committed change that affects tokens.
    auth_epoch: Arc<std::sync::atomic::AtomicU64>,
}

/// How often applied state is fsynced (the log holds everything since, for re-applying).
const SM_SYNC_EVERY: Duration = Duration::from_secs(1);

impl StateMachine {
    fn new(store: &Store) -> Self {
        let synced = Arc::new(std::sync::Mutex::new(Instant::now()));
        Self { db: store.db.clone(), changes: store.changes.clone(), synced, auth_epoch: store.auth_epoch.clone() }
    }

    /// Fsync now if the last was [`SM_SYNC_EVERY`] ago, else leave it to a later commit.
    fn durability(&self) -> Durability {
        let mut last = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < SM_SYNC_EVERY {
            return Durability::None;
        }
        *last = Instant::now();
        Durability::Immediate
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StErr> {
        let db = self.db.clone();
        blocking(move || {
            // One read transaction, so the tables are exactly as of `applied`.
            let read = || -> Result<_, StateError> {
                let tx = db.begin_read()?;
                let applied: Option<LogId<NodeId>> = meta_read(&tx, K_APPLIED)?;
                let membership: StoredMembership<NodeId, BasicNode> = meta_read(&tx, K_MEMBERSHIP)?.unwrap_or_default();
                Ok((applied, membership, serde_json::to_vec(&dump(&tx)?)?))
            };
            let (applied, membership, data) = read().map_err(|e| StorageIOError::read_state_machine(io_err(e)))?;
            let snapshot_id =
                format!("{}-{}", applied.map(|l| l.index).unwrap_or(0), applied.map(|l| l.leader_id.term).unwrap_or(0));
            let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
            let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
            // Fsynced, with every table write before it: the log up to `applied` may be purged.
            write(&db, Durability::Immediate, |tx| meta_put(tx, K_SNAPSHOT, &stored))
                .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?;
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
        })
        .await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StErr> {
        let db = self.db.clone();
        blocking(move || Ok((meta_get(&db, K_APPLIED)?, meta_get(&db, K_MEMBERSHIP)?.unwrap_or_default()))).await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let tokens_affected = entries
            .iter()
            .any(|e| matches!(&e.payload, EntryPayload::Normal(b) if b.0.iter().any(super::apply::affects_tokens)));
        let db = self.db.clone();
        let changes = self.changes.clone();
        let durability = self.durability();
        let applied = blocking(move || {
            let mut outcomes = Vec::with_capacity(entries.len());
            let mut last = None;
            write(&db, durability, |tx| {
                for e in &entries {
                    last = Some(e.log_id);
                    match &e.payload {
                        EntryPayload::Blank => outcomes.push(vec![]),
                        EntryPayload::Normal(batch) => {
                            outcomes.push(batch.0.iter().map(|cmd| apply(tx, cmd)).collect::<Result<_, _>>()?)
                        }
                        EntryPayload::Membership(m) => {
                            meta_put(tx, K_MEMBERSHIP, &StoredMembership::new(Some(e.log_id), m.clone()))?;
                            outcomes.push(vec![]);
                        }
                    }
                }
                meta_put(tx, K_APPLIED, &last)
            })
            .map_err(|e| match last {
                Some(l) => StorageIOError::apply(l, io_err(e)),
                None => StorageIOError::write_state_machine(io_err(e)),
            })?;
            Ok(outcomes)
        })
        .await;
        // After the commit (or its failure), never before: a token validated under the old
        // epoch from the new tables is only revalidated once more.
        if tokens_affected {
            self.auth_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if applied.is_ok() {
            changes.send_modify(|n| *n += 1);
        }
        applied
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StErr> {
        let (db, meta) = (self.db.clone(), meta.clone());
        let installed = blocking(move || {
            let data = snapshot.into_inner();
            let install = || -> Result<(), StateError> {
                let d: Dump = serde_json::from_slice(&data)?;
                write(&db, Durability::Immediate, |tx| {
                    restore(tx, &d)?;
                    meta_put(tx, K_APPLIED, &meta.last_log_id)?;
                    meta_put(tx, K_MEMBERSHIP, &meta.last_membership)?;
                    meta_put(tx, K_SNAPSHOT, &StoredSnapshot { meta: meta.clone(), data: data.clone() })
                })
            };
            install().map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)).into())
        })
        .await;
        self.auth_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if installed.is_ok() {
            self.changes.send_modify(|n| *n += 1);
        }
        installed
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StErr> {
        let db = self.db.clone();
        blocking(move || {
            let s: Option<StoredSnapshot> = meta_get(&db, K_SNAPSHOT)?;
            Ok(s.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
        })
        .await
    }
}

/// The peer transport of a lone node: there are no peers, so every RPC is unreachable.
pub struct NoPeers;

fn unreachable_peer<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no peer transport on a lone node")))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable_peer())
    }
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(unreachable_peer())
    }
    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable_peer())
    }
}

/// What only the leader can do, asked of it by any node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderRequest {
    Propose(Box<Command>),
    /// Adds a node as a learner (it then catches up; the leader promotes it).
    AddLearner {
        id: NodeId,
        addr: String,
    },
    /// Takes a node out of the raft membership.
    RemoveNode {
        id: NodeId,
    },
    /// The leader's read index: the log index a linearizable read must see applied, once a
    /// quorum has confirmed the leader still leads.
    ReadIndex,
}

/// The leader's answer: the outcome and the log index it was applied at, or "not me".
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderReply {
    Done { outcome: Outcome, index: u64 },
    NotLeader,
    Failed(String),
}

/// Why a forwarded request failed.
#[derive(Debug)]
pub enum ForwardError {
    /// It never reached the leader: safe to try again.
    Unsent(String),
    /// It may or may not have been applied.
    Unknown(String),
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How a node hands a [`LeaderRequest`] to the leader at `addr` (the cluster's peer port).
pub trait Forward: Send + Sync {
    fn forward<'a>(&'a self, addr: &'a str, req: &'a LeaderRequest)
        -> BoxFuture<'a, Result<LeaderReply, ForwardError>>;
}

/// How long a request waits for a leader (an election) before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The handle through which every state change is proposed.
#[derive(Clone)]
pub struct Replicated {
    raft: Raft,
    store: Store,
    id: NodeId,
    forward: Option<Arc<dyn Forward>>,
    batcher: tokio::sync::mpsc::UnboundedSender<(Command, Waiter)>,
}

fn raft_config() -> Result<Arc<openraft::Config>, StateError> {
    let config = openraft::Config {
        cluster_name: "cairn".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        // The tables are the state; the log is kept until a snapshot covers it.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StateError::Raft(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Where a failed local attempt leaves a leader request.
#[derive(Clone, Debug)]
enum Local {
    /// Another node leads (its peer address, when known).
    Forward(Option<String>),
    /// Another membership change is being committed: try again in a moment.
    Busy,
    Fatal(String),
}

impl Local {
    fn from_write(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Local::Forward(f.leader_node.map(|n| n.addr)),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
                Local::Busy
            }
            e => Local::Fatal(e.to_string()),
        }
    }
}

impl Replicated {
    /// Starts raft over `store` as a lone node `id` without a peer transport; a fresh store
    /// becomes a single-voter cluster.
    pub async fn start(store: Store, id: NodeId, addr: String) -> Result<Self, StateError> {
        Self::start_with(store, id, Some(addr), NoPeers, None).await
    }

    /// Starts raft over `store` as node `id` with the peer transport `network`. With
    /// `seed_addr`, a fresh store becomes a single-voter cluster whose one member is at that
    /// peer address; without, the node waits for a leader to add it.
    pub async fn start_with<N: RaftNetworkFactory<TypeConfig>>(
        store: Store,
        id: NodeId,
        seed_addr: Option<String>,
        network: N,
        forward: Option<Arc<dyn Forward>>,
    ) -> Result<Self, StateError> {
        let raft = Raft::new(id, raft_config()?, network, LogStore::new(store.log.clone()), StateMachine::new(&store))
            .await
            .map_err(|e| StateError::Raft(e.to_string()))?;
        let initialized = raft.is_initialized().await.map_err(|e| StateError::Raft(e.to_string()))?;
        if let (false, Some(addr)) = (initialized, seed_addr) {
            let members = BTreeMap::from([(id, BasicNode { addr })]);
            raft.initialize(members).await.map_err(|e| StateError::Raft(e.to_string()))?;
            raft.wait(Some(Duration::from_secs(30)))
                .current_leader(id, "lone node becomes leader")
                .await
                .map_err(|e| StateError::Raft(e.to_string()))?;
        }
        let (batcher, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batch_loop(raft.clone(), rx));
        Ok(Self { raft, store, id, forward, batcher })
    }

    /// Waits up to `timeout` for some node to lead and for this one to have applied all its
    /// log held when asked (after a crash the tables can be behind the log by up to a second of
    /// writes); says whether both happened.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let logged = self.raft.metrics().borrow().last_log_index;
        self.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader").await.is_ok()
            && self
                .raft
                .wait(Some(deadline.saturating_duration_since(Instant::now())))
                .applied_index_at_least(logged, "the log applied")
                .await
                .is_ok()
    }

    /// Proposes `cmd`; returns once it is durably logged (by a quorum) and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, StateError> {
        self.at_leader(LeaderRequest::Propose(Box::new(cmd))).await
    }

    /// Adds node `id` (peer port `addr`) as a learner, through the leader.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), StateError> {
        self.at_leader(LeaderRequest::AddLearner { id, addr }).await.map(|_| ())
    }

    /// Makes the next read of this node's state linearizable: waits until it has applied
    /// everything the leader had committed when asked (the leader first confirms with a quorum
    /// that it still leads). On a lone voter every acknowledged write is already applied here.
    pub async fn linearize(&self) -> Result<(), StateError> {
        let lone = self.raft.metrics().borrow().membership_config.membership().voter_ids().eq([self.id]);
        if lone {
            return Ok(());
        }
        self.at_leader(LeaderRequest::ReadIndex).await.map(|_| ())
    }

    /// Takes node `id` out of the raft membership, through the leader.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), StateError> {
        self.at_leader(LeaderRequest::RemoveNode { id }).await.map(|_| ())
    }

    /// Runs `req` here when this node leads, else hands it to the leader, retrying while there
    /// is none (an election) for up to [`LEADER_WAIT`]. The answer comes once this node has
    /// applied the entry too.
    async fn at_leader(&self, req: LeaderRequest) -> Result<Outcome, StateError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            match self.local(&req).await {
                Ok((outcome, _)) => return Ok(outcome),
                Err(Local::Fatal(e)) => return Err(StateError::Raft(e)),
                Err(Local::Forward(Some(addr))) => {
                    let Some(fwd) = &self.forward else {
                        return Err(StateError::Raft("another node leads and there is no peer transport".into()));
                    };
                    match fwd.forward(&addr, &req).await {
                        Ok(LeaderReply::Done { outcome, index }) => {
                            self.raft
                                .wait(Some(LEADER_WAIT))
                                .applied_index_at_least(Some(index), "the forwarded entry")
                                .await
                                .map_err(|e| StateError::Raft(e.to_string()))?;
                            return Ok(outcome);
                        }
                        Ok(LeaderReply::Failed(e)) => return Err(StateError::Raft(e)),
                        Ok(LeaderReply::NotLeader) => last = format!("{addr} no longer leads"),
                        Err(ForwardError::Unsent(e)) => last = e,
                        Err(ForwardError::Unknown(e)) => {
                            return Err(StateError::Raft(format!("the leader at {addr} did not answer: {e}")))
                        }
                    }
                }
                Err(Local::Forward(None)) => {}
                Err(Local::Busy) => last = "another membership change is being committed".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StateError::NoLeader(last))
    }

    /// Serves a request another node forwarded, if this node leads.
    pub async fn serve_leader(&self, req: &LeaderRequest) -> LeaderReply {
        match self.local(req).await {
            Ok((outcome, index)) => LeaderReply::Done { outcome, index },
            // Either way the asking node tries again shortly.
            Err(Local::Forward(_) | Local::Busy) => LeaderReply::NotLeader,
            Err(Local::Fatal(e)) => LeaderReply::Failed(e),
        }
    }

    async fn local(&self, req: &LeaderRequest) -> Result<(Outcome, u64), Local> {
        let written = match req {
            LeaderRequest::Propose(cmd) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let lost = || Local::Fatal("the batcher stopped".into());
                self.batcher.send((Command::clone(cmd), tx)).map_err(|_| lost())?;
                return rx.await.map_err(|_| lost())?;
            }
            LeaderRequest::AddLearner { id, addr } => {
                self.raft.add_learner(*id, BasicNode { addr: addr.clone() }, false).await
            }
            LeaderRequest::RemoveNode { id } => {
                let m = self.raft.metrics().borrow().membership_config.membership().clone();
                if m.voter_ids().any(|v| v == *id) {
                    self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([*id])), false).await
                } else if m.nodes().any(|(n, _)| *n == *id) {
                    self.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([*id])), false).await
                } else {
                    return Ok((Ok(()), 0));
                }
            }
            LeaderRequest::ReadIndex => {
                return match self.raft.ensure_linearizable().await {
                    Ok(read) => Ok((Ok(()), read.map_or(0, |l| l.index))),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                        Err(Local::Forward(f.leader_node.map(|n| n.addr)))
                    }
                    // No quorum answered: as during an election, ask again until the deadline.
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(Local::Forward(None)),
                    Err(e) => Err(Local::Fatal(e.to_string())),
                };
            }
        };
        match written {
            Ok(resp) => Ok((Ok(()), resp.log_id.index)),
            Err(e) => Err(Local::from_write(e)),
        }
    }

    /// Promotes caught-up learners while there are fewer voters than `target`; only the
    /// leader acts. Returns the ids promoted.
    pub async fn promote_learners(&self, target: usize) -> Result<Vec<NodeId>, StateError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return Ok(vec![]);
        }
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        let last = m.last_log_index.unwrap_or(0);
        let caught_up = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .is_some_and(|matched| last.saturating_sub(matched.index) < 100)
        };
        let promote: BTreeSet<NodeId> =
            membership.learner_ids().filter(caught_up).take(target.saturating_sub(voters)).collect();
        if promote.is_empty() {
            return Ok(vec![]);
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(promote.clone()), true)
            .await
            .map_err(|e| StateError::Raft(e.to_string()))?;
        Ok(promote.into_iter().collect())
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The raft members (voters and learners) and their peer addresses, as this node knows them.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// Each raft member's role as this node sees it: `leader`, `follower` (a voter) or
    /// `learner`.
    pub fn roles(&self) -> BTreeMap<NodeId, &'static str> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let mut out: BTreeMap<NodeId, &'static str> = membership.learner_ids().map(|id| (id, "learner")).collect();
        for id in membership.voter_ids() {
            out.insert(id, if m.current_leader == Some(id) { "leader" } else { "follower" });
        }
        out
    }

    /// Stops raft, flushing what it holds.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            log::warn!("raft shutdown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Project};
    use crate::state::Command;
    use crate::state::IdentityCommand;

    fn project(n: u32) -> Command {
        Command::Identity(IdentityCommand::CreateProject(Project {
            tags: Vec::new(),
            id: format!("p{n}"),
            name: Name::new("name", &format!("project-{n}")).unwrap(),
            domain_id: "default".into(),
            description: String::new(),
            enabled: true,
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proposals_survive_restart_and_are_not_reapplied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let r = Replicated::start(Store::open(&path).unwrap(), 1, "127.0.0.1:1".into()).await.unwrap();
            for i in 0..20 {
                assert_eq!(r.propose(project(i)).await.unwrap(), Ok(()));
            }
            assert!(r.propose(project(3)).await.unwrap().is_err(), "duplicate refused");
            r.shutdown().await;
        }
        // raft's background tasks release the database shortly after shutdown.
        let mut reopened = Store::open(&path);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            reopened = Store::open(&path);
        }
        let r = Replicated::start(reopened.unwrap(), 1, "127.0.0.1:1".into()).await.unwrap();
        assert_eq!(r.store().view().unwrap().projects().unwrap().len(), 20);
        assert_eq!(r.propose(project(20)).await.unwrap(), Ok(()));
        assert_eq!(r.store().view().unwrap().projects().unwrap().len(), 21);
        r.shutdown().await;
    }

    /// The process dies (no shutdown, no destructors) right after its writes were acknowledged,
    /// before the state tables were fsynced: on restart the tables are behind the log, and the
    /// log brings every write back, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_before_the_tables_are_fsynced_loses_no_acknowledged_write() {
        const CHILD: &str = "CAIRN_TEST_CRASH_STATE";
        if let Ok(path) = std::env::var(CHILD) {
            let r = Replicated::start(Store::open(std::path::Path::new(&path)).unwrap(), 1, "x".into()).await.unwrap();
            for i in 0..20 {
                assert_eq!(r.propose(project(i)).await.unwrap(), Ok(()));
            }
            std::process::exit(0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "state::raft::tests::a_crash_before_the_tables_are_fsynced_loses_no_acknowledged_write"])
            .env(CHILD, &path)
            .status()
            .unwrap();
        assert!(status.success());
        let store = Store::open(&path).unwrap();
        let applied: Option<LogId<NodeId>> = meta_get(&store.db, K_APPLIED).unwrap();
        let logged = store.log.begin_read().unwrap().open_table(LOG).unwrap().last().unwrap().map(|(k, _)| k.value());
        assert!(applied.map(|l| l.index) < logged, "tables fsynced up to {applied:?}, log up to {logged:?}");
        let r = Replicated::start(store, 1, "x".into()).await.unwrap();
        assert!(r.catch_up(Duration::from_secs(30)).await);
        assert_eq!(r.store().view().unwrap().projects().unwrap().len(), 20);
        assert!(r.propose(project(7)).await.unwrap().is_err(), "applied once: the name is taken");
        r.shutdown().await;
    }

    #[test]
    fn a_log_kept_in_the_state_database_moves_to_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let vote = Vote::new(3, 1);
        {
            let old = Database::create(&path).unwrap();
            write(&old, Durability::Immediate, |tx| {
                create_tables(tx)?;
                for i in 1..=5u64 {
                    tx.open_table(LOG)?.insert(i, format!("entry {i}").as_bytes())?;
                }
                meta_put(tx, K_VOTE, &vote)?;
                meta_put(tx, K_APPLIED, &Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 5)))
            })
            .unwrap();
        }
        for _ in 0..2 {
            let s = Store::open(&path).unwrap();
            let moved = s.log.begin_read().unwrap();
            let moved = moved.open_table(LOG).unwrap();
            assert_eq!(moved.len().unwrap(), 5);
            assert_eq!(moved.get(3).unwrap().unwrap().value(), b"entry 3");
            assert_eq!(meta_get::<Vote<NodeId>>(&s.log, K_VOTE).unwrap(), Some(vote));
            assert!(s.db.begin_read().unwrap().open_table(LOG).unwrap().is_empty().unwrap());
            assert_eq!(meta_get::<Vote<NodeId>>(&s.db, K_VOTE).unwrap(), None);
            let applied: Option<LogId<NodeId>> = meta_get(&s.db, K_APPLIED).unwrap().flatten();
            assert_eq!(applied.map(|l| l.index), Some(5), "the state's own records stay");
        }
    }

    #[test]
    fn entries_hold_batches_and_read_bare_commands() {
        let b = Batch(vec![project(1), project(2)]);
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Batch>(&text).unwrap(), b);
        let bare = serde_json::to_string(&project(3)).unwrap();
        assert_eq!(serde_json::from_str::<Batch>(&bare).unwrap(), Batch(vec![project(3)]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_proposals_share_entries_and_each_get_their_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replicated::start(Store::open(&dir.path().join("s.redb")).unwrap(), 1, "x".into()).await.unwrap();
        let before = r.raft().metrics().borrow().last_log_index.unwrap_or(0);
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let r = r.clone();
                // Every tenth one is a duplicate, refused on its own without failing the rest.
                tokio::spawn(async move { r.propose(project(if i % 10 == 9 { i - 1 } else { i })).await.unwrap() })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            refused += usize::from(t.await.unwrap().is_err());
        }
        assert_eq!(refused, 20);
        assert_eq!(r.store().view().unwrap().projects().unwrap().len(), 180);
        let entries = r.raft().metrics().borrow().last_log_index.unwrap_or(0) - before;
        assert!(entries < 200, "{entries} entries for 200 commands: nothing was batched");
        r.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("a.redb")).unwrap();
        let b = Store::open(&dir.path().join("b.redb")).unwrap();
        let r = Replicated::start(a, 1, "x".into()).await.unwrap();
        r.propose(project(1)).await.unwrap().unwrap();
        let mut sm = StateMachine::new(r.store());
        let snap = sm.build_snapshot().await.unwrap();
        let mut other = StateMachine::new(&b);
        other.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(b.view().unwrap().project("p1").unwrap().unwrap().name.as_str(), "project-1");
        assert_eq!(b.view().unwrap().project_by_name("default", "project-1").unwrap().unwrap().id, "p1");
        assert!(other.get_current_snapshot().await.unwrap().is_some());
        r.shutdown().await;
    }
}
