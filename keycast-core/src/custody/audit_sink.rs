//! Group-commit audit writer.
//!
//! Callers hand a record over and wait until the batch holding it is in the KeyStore, so a
//! result is only returned once its audit record is durable. Concurrent callers share one
//! `append_audit` call, which keeps the cost per record low under load.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::model::audit::AuditRecord;
use crate::traits::key_store::KeyStore;

struct Pending {
    record: AuditRecord,
    done: oneshot::Sender<Result<()>>,
}

/// The sending side; the writer task stops when every sink handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    tx: async_channel::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl AuditSink {
    /// Spawns the writer on the current Tokio runtime.
    pub(crate) fn spawn(
        store: Arc<dyn KeyStore>,
        capacity: usize,
        batch_max: usize,
    ) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Internal("the custody engine must be built inside a Tokio runtime".into())
        })?;
        let (tx, rx) = async_channel::bounded::<Pending>(capacity.max(1));
        handle.spawn(write_batches(store, rx, batch_max.max(1)));
        Ok(Self { tx })
    }

    /// Records and waits until durable. A full queue is [`Error::Overloaded`].
    pub(crate) async fn record(&self, record: AuditRecord) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { record, done })
            .map_err(|e| match e {
                async_channel::TrySendError::Full(_) => Error::Overloaded,
                async_channel::TrySendError::Closed(_) => {
                    Error::Internal("audit writer stopped".into())
                }
            })?;
        rx.await
            .map_err(|_| Error::Internal("audit writer dropped a record".into()))?
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.tx.len()
    }
}

async fn write_batches(
    store: Arc<dyn KeyStore>,
    rx: async_channel::Receiver<Pending>,
    batch_max: usize,
) {
    let mut records = Vec::with_capacity(batch_max);
    let mut waiting = Vec::with_capacity(batch_max);
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(Pending { record, done }) = next.take() {
            records.push(record);
            waiting.push(done);
            if records.len() < batch_max {
                next = rx.try_recv().ok();
            }
        }
        let result = store.append_audit(&records).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, count = records.len(), "audit write failed; results withheld");
        }
        for done in waiting.drain(..) {
            let _ = done.send(result.clone());
        }
        records.clear();
    }
}
