//! Waiting for something to happen by polling what can be observed, with a deadline that
//! only bounds a failure (a passing test waits no longer than the condition takes).

use std::future::Future;
use std::time::{Duration, Instant};

/// The first poll interval; doubled after each miss up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// The longest pause between polls, so a condition that comes true late is seen soon.
const MAX_POLL: Duration = Duration::from_millis(100);

/// What a condition returns: `true`/`Some(value)` when met, `false`/`None` when not yet.
pub trait Done {
    /// What [`eventually`] returns once the condition is met.
    type Value;
    /// `Some` when the condition is met.
    fn done(self) -> Option<Self::Value>;
}

impl Done for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Done for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Polls `condition` (with a short, growing pause) until it is met; its value.
///
/// # Panics
/// When `deadline` passes first, naming `what` was waited for.
pub async fn eventually<F, Fut, R>(deadline: Duration, what: &str, mut condition: F) -> R::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Done,
{
    let until = Instant::now() + deadline;
    let mut pause = FIRST_POLL;
    loop {
        if let Some(value) = condition().await.done() {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// [`eventually`] for a test on plain threads: `condition` is called on this thread.
///
/// # Panics
/// When `deadline` passes first, naming `what` was waited for.
pub fn eventually_blocking<R: Done>(
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> R,
) -> R::Value {
    let until = Instant::now() + deadline;
    let mut pause = FIRST_POLL;
    loop {
        if let Some(value) = condition().done() {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let n = eventually(Duration::from_secs(5), "the third call", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never")]
    async fn panics_naming_what_it_waited_for() {
        eventually(Duration::from_millis(30), "never", || async { false }).await;
    }

    #[test]
    fn blocking_polls_until_true() {
        let mut calls = 0;
        eventually_blocking(Duration::from_secs(5), "the second call", || {
            calls += 1;
            calls == 2
        });
        assert_eq!(calls, 2);
    }

    #[test]
    #[should_panic(expected = "waiting for nothing")]
    fn blocking_panics_at_the_deadline() {
        eventually_blocking(Duration::from_millis(30), "nothing", || None::<()>);
    }
}
