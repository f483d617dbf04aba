//! A dedicated pool of threads for CPU-bound crypto, fed by a bounded queue.
//!
//! Tokio's blocking pool has an unbounded queue; this one refuses work with
//! [`Error::Overloaded`] when full, so overload is visible instead of piling up.
//!
//! Under load a worker takes up to [`BATCH`] jobs that are already waiting, runs them, and
//! hands all their results to one dispatcher task on the runtime, which completes them
//! there. One cross-thread wake per batch instead of one per job removes most thread
//! switches, which otherwise cost about a seventh of the CPU per signature on a busy core.
//! With no backlog a batch is one job, so idle latency is unchanged.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Most jobs a worker runs before it hands their results back.
pub(super) const BATCH: usize = 8;

/// Hands one job's result back to its caller (wakes the waiting task).
type Deliver = Box<dyn FnOnce() + Send + 'static>;
/// Runs one job and returns how to deliver its result.
type Job = Box<dyn FnOnce() -> Deliver + Send + 'static>;

/// Fixed threads pulling jobs from a bounded MPMC queue. Threads exit when the pool is dropped.
#[derive(Debug)]
pub(crate) struct CryptoPool {
    tx: async_channel::Sender<Job>,
}

/// Completes a batch of results on the runtime, where waking tasks is cheap.
async fn dispatch(mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<Deliver>>) {
    while let Some(batch) = rx.recv().await {
        for deliver in batch {
            deliver();
        }
    }
}

impl CryptoPool {
    /// Starts `threads` workers (at least one) with room for `capacity` waiting jobs.
    /// Must be called inside a Tokio runtime (the result dispatcher runs there).
    pub(crate) fn new(threads: usize, capacity: usize) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Internal("the custody engine must be built inside a Tokio runtime".into())
        })?;
        // Unbounded is safe: it never holds more batches than there are queued jobs.
        let (results, results_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Deliver>>();
        runtime.spawn(dispatch(results_rx));
        let (tx, rx) = async_channel::bounded::<Job>(capacity.max(1));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let results = results.clone();
            std::thread::Builder::new()
                .name(format!("keycast-crypto-{i}"))
                .spawn(move || {
                    let mut done: Vec<Deliver> = Vec::with_capacity(BATCH);
                    while let Ok(job) = rx.recv_blocking() {
                        done.push(job());
                        while done.len() < BATCH {
                            match rx.try_recv() {
                                Ok(job) => done.push(job()),
                                Err(_) => break,
                            }
                        }
                        let batch = std::mem::replace(&mut done, Vec::with_capacity(BATCH));
                        if let Err(unsent) = results.send(batch) {
                            // The runtime is gone; complete here so no caller hangs.
                            unsent.0.into_iter().for_each(|deliver| deliver());
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start crypto thread: {e}")))?;
        }
        Ok(Self { tx })
    }

    /// Runs `f` on a pool thread and returns its result.
    ///
    /// Fails with [`Error::Overloaded`] when the queue is full, and with [`Error::Internal`]
    /// if `f` panics (the worker survives).
    pub(crate) async fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            Box::new(move || {
                let _ = done.send(result);
            })
        });
        self.tx.try_send(job).map_err(|e| match e {
            async_channel::TrySendError::Full(_) => Error::Overloaded,
            async_channel::TrySendError::Closed(_) => Error::Internal("crypto pool stopped".into()),
        })?;
        match result.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_panic)) => Err(Error::Internal("crypto task panicked".into())),
            Err(_) => Err(Error::Internal("crypto task was dropped".into())),
        }
    }

    /// Jobs waiting now.
    pub(crate) fn queue_len(&self) -> usize {
        self.tx.len()
    }

    /// Queue capacity.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }
}

impl Drop for CryptoPool {
    fn drop(&mut self) {
        self.tx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_off_the_runtime_and_survives_panics() {
        let pool = CryptoPool::new(1, 4).expect("pool");
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert_eq!(name.as_deref(), Some("keycast-crypto-0"));
        #[allow(clippy::panic)]
        let err = pool.run(|| panic!("boom")).await;
        assert_eq!(err, Err(Error::Internal("crypto task panicked".into())));
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
    }

    #[tokio::test]
    async fn full_queue_is_overloaded() {
        let pool = std::sync::Arc::new(CryptoPool::new(1, 1).expect("pool"));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let busy = tokio::spawn(async move {
            p.run(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("worker started");
        // The worker is busy: one job fits in the queue, the next is refused.
        let p = pool.clone();
        let queued = tokio::spawn(async move { p.run(|| 1).await });
        while pool.queue_len() < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 2).await, Err(Error::Overloaded));
        release_tx.send(()).expect("release");
        assert_eq!(busy.await.expect("join"), Ok(()));
        assert_eq!(queued.await.expect("join"), Ok(1));
    }
}
