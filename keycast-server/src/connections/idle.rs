//! Idle connections: a stream wrapper that notes when bytes last moved, and a future that
//! resolves once none have moved for a while. The connection's task races the two and
//! drops the connection (closing it) when the idle one wins.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When bytes last moved on one connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: Arc<AtomicU64>,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once no byte has moved for `idle`. Sleeps until the deadline the last
    /// activity sets, then looks again (activity may have moved it on meanwhile).
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream that records its [`Activity`] on every read or write that moves bytes.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn idle_means_no_byte_either_way_for_the_whole_period() {
        let (a, mut b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut tracked = Tracked::new(a, activity.clone());
        let idle = Duration::from_millis(300);
        let started = Instant::now();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(idle).await }
        });
        // A byte in at 200 ms and one out at 400 ms each push the deadline on, so it
        // cannot come before 700 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.write_all(b"x").await.expect("write");
        let mut one = [0u8; 1];
        tracked.read_exact(&mut one).await.expect("read");
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracked.write_all(b"y").await.expect("write");
        assert!(!waiting.is_finished(), "idle while bytes were moving");
        waiting.await.expect("idle");
        assert!(started.elapsed() >= Duration::from_millis(700));
    }
}
