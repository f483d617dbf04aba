//! A local, fsynced spool for audit records the database cannot take right now.
//!
//! The engine releases a result only once its audit record is stored (design §7 wants
//! cached keys to keep signing through a database outage). With a spool attached, a store
//! whose database is unreachable writes the records to a file in the data directory,
//! fsyncs it and answers `Ok`; from then on every record goes to the spool (so no caller
//! waits on the dead database again) until a background task has moved all of them into
//! the database. Each line carries a fresh id, stored in `audit_log.spool_id` (unique), so a
//! crash between the insert and the file's removal never stores a record twice.
//!
//! Files, in the spool directory (0700; files 0600): `audit-spool.jsonl` takes appends;
//! a drain renames it to `audit-spool.draining.jsonl` first, so appends go on while the
//! drain inserts. A torn last line (a crash in the middle of an append that was therefore
//! never acknowledged) is skipped. The spool holds ids, methods, kinds, event ids and
//! outcomes: never a secret.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keycast_core::{AuditRecord, Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::StorageError;

/// How often the drain task looks at the spool when nothing wakes it.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(500);
/// Rows per insert statement when draining.
pub(crate) const INSERT_CHUNK: usize = 500;

/// Wakes and stops a store's drain task.
#[derive(Debug, Default)]
pub(crate) struct DrainSignals {
    pub wake: Notify,
    pub stop: Notify,
}

const APPENDING: &str = "audit-spool.jsonl";
const DRAINING: &str = "audit-spool.draining.jsonl";

/// An `audit_log` row's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditValues {
    pub at: i64,
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub key_id: Uuid,
    pub authorization_id: Option<Uuid>,
    pub method: String,
    pub event_kind: Option<i64>,
    pub event_id: Option<Vec<u8>>,
    pub outcome: String,
    pub detail: Option<String>,
}

impl AuditValues {
    pub(crate) fn of(r: &AuditRecord) -> Result<Self> {
        let (outcome, detail) = crate::rows::outcome_parts(&r.outcome);
        Ok(Self {
            at: crate::rows::ts(r.at)?,
            tenant_id: *r.tenant_id.as_uuid(),
            user_id: r.user_id.map(|u| *u.as_uuid()),
            key_id: *r.key_id.as_uuid(),
            authorization_id: r.authorization_id.map(|a| *a.as_uuid()),
            method: r.action.as_str().to_owned(),
            event_kind: r.event_kind.map(i64::from),
            event_id: r.event_id.map(|e| e.to_bytes().to_vec()),
            outcome: outcome.to_owned(),
            detail: detail.map(str::to_owned),
        })
    }
}

impl AuditValues {
    /// Rows for records inserted directly (no spool id).
    pub(crate) fn direct(records: &[AuditRecord]) -> Result<Vec<(Option<Uuid>, Self)>> {
        records.iter().map(|r| Ok((None, Self::of(r)?))).collect()
    }
}

/// One spooled record: its values under the id it is stored with (`spool_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpoolLine {
    pub id: Uuid,
    #[serde(flatten)]
    pub values: AuditValues,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records written to the spool since start.
    pub spooled: u64,
    /// Spooled records moved into the database since start.
    pub drained: u64,
    /// Whether records are waiting in the spool now.
    pub pending: bool,
}

/// The spool; cheap to clone. See the module docs.
#[derive(Debug, Clone)]
pub struct AuditSpool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Serialises appends, renames and removals.
    files: Mutex<()>,
    pending: AtomicBool,
    spooled: AtomicU64,
    drained: AtomicU64,
}

impl AuditSpool {
    /// Opens (creating, 0700) the spool directory `dir`. Records left there by an earlier
    /// run count as pending and are drained once a store takes the spool.
    pub fn open(dir: impl AsRef<Path>) -> std::result::Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir).map_err(|e| {
            StorageError::Config(format!(
                "cannot create the audit spool directory {}: {e}",
                dir.display()
            ))
        })?;
        let pending = [APPENDING, DRAINING]
            .iter()
            .any(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.len() > 0));
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                files: Mutex::new(()),
                pending: AtomicBool::new(pending),
                spooled: AtomicU64::new(0),
                drained: AtomicU64::new(0),
            }),
        })
    }

    /// Whether records wait in the spool; while they do, new records go there too.
    pub fn pending(&self) -> bool {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            spooled: self.inner.spooled.load(Ordering::Relaxed),
            drained: self.inner.drained.load(Ordering::Relaxed),
            pending: self.pending(),
        }
    }

    /// Appends `records` under fresh ids and fsyncs; `Ok` means they are durable.
    pub(crate) async fn append(&self, records: &[AuditRecord]) -> Result<()> {
        let mut text = Vec::with_capacity(records.len() * 256);
        for r in records {
            let line = SpoolLine {
                id: Uuid::new_v4(),
                values: AuditValues::of(r)?,
            };
            serde_json::to_writer(&mut text, &line)
                .map_err(|e| Error::Internal(format!("audit spool line: {e}")))?;
            text.push(b'\n');
        }
        let inner = self.inner.clone();
        let count = records.len() as u64;
        blocking(move || {
            let _files = inner.files.lock().unwrap_or_else(|e| e.into_inner());
            append_synced(&inner.dir, &text)?;
            inner.pending.store(true, Ordering::Release);
            inner.spooled.fetch_add(count, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// The records to move into the database next: the draining file, started from the
    /// appending one if there is none. Empty when nothing waits.
    pub(crate) async fn batch(&self) -> Result<Vec<SpoolLine>> {
        let inner = self.inner.clone();
        blocking(move || {
            let _files = inner.files.lock().unwrap_or_else(|e| e.into_inner());
            let draining = inner.dir.join(DRAINING);
            if !draining.exists() {
                let appending = inner.dir.join(APPENDING);
                if !appending.exists() {
                    return Ok(Vec::new());
                }
                std::fs::rename(&appending, &draining).map_err(io_error)?;
                sync_dir(&inner.dir)?;
            }
            read_lines(&draining)
        })
        .await
    }

    /// The last [`AuditSpool::batch`] is in the database: forget it. Clears `pending` when
    /// nothing was appended meanwhile.
    pub(crate) async fn batch_stored(&self, count: usize) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || {
            let _files = inner.files.lock().unwrap_or_else(|e| e.into_inner());
            match std::fs::remove_file(inner.dir.join(DRAINING)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e)),
            }
            sync_dir(&inner.dir)?;
            inner.drained.fetch_add(count as u64, Ordering::Relaxed);
            if !inner.dir.join(APPENDING).exists() {
                inner.pending.store(false, Ordering::Release);
            }
            Ok(())
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("audit spool task: {e}")))?
}

fn io_error(e: std::io::Error) -> Error {
    tracing::error!(error = %e, "audit spool I/O failed");
    Error::Unavailable("audit spool cannot be written".into())
}

/// Appends `text` whole or not at all: a failed write (a full disk) is cut back off, so the
/// next append cannot be glued onto a fragment and lost with it.
fn append_synced(dir: &Path, text: &[u8]) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(APPENDING);
    let created = !path.exists();
    let mut options = OpenOptions::new();
    options.create(true).read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io_error)?;
    let before = file.metadata().map_err(io_error)?.len();
    // A fragment a failed cut left behind ends on its own line (the reader skips it).
    let mut last = [b'\n'];
    if before > 0 {
        file.seek(SeekFrom::Start(before - 1)).map_err(io_error)?;
        file.read_exact(&mut last).map_err(io_error)?;
    }
    let separator: &[u8] = if last[0] == b'\n' { b"" } else { b"\n" };
    let written = file
        .write_all(separator)
        .and_then(|()| file.write_all(text))
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(before);
        let _ = file.sync_data();
        return Err(io_error(e));
    }
    if created {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_lines(path: &Path) -> Result<Vec<SpoolLine>> {
    let file = File::open(path).map_err(io_error)?;
    let mut lines = Vec::new();
    let mut skipped = 0usize;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io_error)?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<SpoolLine>(&line) {
            Ok(l) => lines.push(l),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        // Only a crash in the middle of an append (never acknowledged) leaves such a line.
        tracing::warn!(
            skipped,
            "audit spool: skipped unreadable lines (torn by a crash)"
        );
    }
    Ok(lines)
}

/// Makes a rename, creation or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_core::nostr::Timestamp;
    use keycast_core::{KeyId, Method, Outcome, TenantId};

    fn record(n: u64) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from(1_700_000_000 + n),
            tenant_id: TenantId::random(),
            user_id: None,
            key_id: KeyId::random(),
            authorization_id: None,
            action: Method::SignEvent.into(),
            event_kind: Some(1),
            event_id: None,
            outcome: Outcome::Allowed,
        }
    }

    #[tokio::test]
    async fn appends_drain_in_batches_and_appends_during_a_drain_wait_for_the_next() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = AuditSpool::open(dir.path()).expect("open");
        assert!(!spool.pending());
        assert!(spool.batch().await.expect("batch").is_empty());

        spool.append(&[record(1), record(2)]).await.expect("append");
        assert!(spool.pending());
        let first = spool.batch().await.expect("batch");
        assert_eq!(first.len(), 2);
        assert_ne!(first[0].id, first[1].id, "each record gets its own id");
        // Appends while a batch is out go to a new file, not into the batch.
        spool.append(&[record(3)]).await.expect("append");
        assert_eq!(spool.batch().await.expect("same batch again"), first);
        spool.batch_stored(first.len()).await.expect("stored");
        assert!(spool.pending(), "record 3 still waits");
        let second = spool.batch().await.expect("batch");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].values.at, 1_700_000_003);
        spool.batch_stored(1).await.expect("stored");
        assert!(!spool.pending());
        assert_eq!(
            spool.stats(),
            SpoolStats {
                spooled: 3,
                drained: 3,
                pending: false
            }
        );
    }

    #[tokio::test]
    async fn a_reopened_spool_finds_what_a_crash_left_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let spool = AuditSpool::open(dir.path()).expect("open");
            spool.append(&[record(1)]).await.expect("append");
        }
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(APPENDING))
            .expect("file");
        f.write_all(b"{\"id\":\"00000000-").expect("torn");
        drop(f);
        let spool = AuditSpool::open(dir.path()).expect("reopen");
        assert!(spool.pending());
        let batch = spool.batch().await.expect("batch");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].values.at, 1_700_000_001);
    }

    #[tokio::test]
    async fn an_append_after_a_fragment_starts_its_own_line() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = AuditSpool::open(dir.path()).expect("open");
        spool.append(&[record(1)]).await.expect("append");
        // What a failed write whose cut-back also failed leaves behind.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(APPENDING))
            .expect("file");
        f.write_all(b"{\"id\":").expect("fragment");
        drop(f);
        spool.append(&[record(2)]).await.expect("append");
        let ats: Vec<i64> = spool
            .batch()
            .await
            .expect("batch")
            .iter()
            .map(|l| l.values.at)
            .collect();
        assert_eq!(ats, [1_700_000_001, 1_700_000_002]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_spool_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let spool_dir = dir.path().join("spool");
        let spool = AuditSpool::open(&spool_dir).expect("open");
        spool.append(&[record(1)]).await.expect("append");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&spool_dir), 0o700);
        assert_eq!(mode(&spool_dir.join(APPENDING)), 0o600);
    }

    #[cfg(feature = "sqlite")]
    mod with_sqlite {
        use super::*;
        use crate::SqliteStore;
        use keycast_core::{AuditFilter, KeyStore};

        async fn store(dir: &Path) -> SqliteStore {
            let store = SqliteStore::open(dir.join("k.db")).await.expect("open");
            store.migrate().await.expect("migrate");
            store
        }

        async fn audited(store: &SqliteStore, tenant: TenantId) -> Vec<AuditRecord> {
            store
                .list_audit(&AuditFilter {
                    tenant_id: tenant,
                    key_id: None,
                    authorization_id: None,
                    limit: 100,
                })
                .await
                .expect("list")
        }

        async fn drained(spool: &AuditSpool) {
            for _ in 0..100 {
                if !spool.pending() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the spool never drained");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn records_the_database_refuses_are_spooled_then_stored_by_the_next_run() {
            let dir = tempfile::tempdir().expect("dir");
            let spool_dir = dir.path().join("spool");
            let r = record(1);
            {
                let down = store(dir.path())
                    .await
                    .with_audit_spool(AuditSpool::open(&spool_dir).expect("spool"));
                // Closed pools answer Unavailable, as a dead server does.
                down.close().await;
                down.append_audit(std::slice::from_ref(&r))
                    .await
                    .expect("acknowledged through the spool");
                assert!(down.audit_spool().expect("spool").pending());
            }
            let spool = AuditSpool::open(&spool_dir).expect("reopen");
            let up = store(dir.path()).await.with_audit_spool(spool.clone());
            drained(&spool).await;
            assert_eq!(audited(&up, r.tenant_id).await, vec![r.clone()]);
            // With the spool empty, records go straight in again.
            let next = AuditRecord {
                tenant_id: r.tenant_id,
                ..record(2)
            };
            up.append_audit(std::slice::from_ref(&next))
                .await
                .expect("append");
            assert!(!spool.pending());
            assert_eq!(audited(&up, r.tenant_id).await.len(), 2);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_drain_cut_short_by_a_crash_stores_each_record_once() {
            let dir = tempfile::tempdir().expect("dir");
            let spool_dir = dir.path().join("spool");
            let r = record(1);
            let db = store(dir.path()).await;
            {
                let spool = AuditSpool::open(&spool_dir).expect("spool");
                spool
                    .append(std::slice::from_ref(&r))
                    .await
                    .expect("append");
                // The drain inserted the batch, then the process died before removing it.
                let batch = spool.batch().await.expect("batch");
                let rows: Vec<_> = batch
                    .iter()
                    .map(|l| (Some(l.id), l.values.clone()))
                    .collect();
                db.insert_audit(&rows).await.expect("insert");
            }
            let spool = AuditSpool::open(&spool_dir).expect("reopen");
            assert!(spool.pending());
            let db = db.with_audit_spool(spool.clone());
            drained(&spool).await;
            assert_eq!(audited(&db, r.tenant_id).await, vec![r]);
        }
    }
}
