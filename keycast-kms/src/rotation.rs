//! Master-key rotation: rewrap every stored DEK under the keyring's primary KEK.
//!
//! Only the wrapped DEK of each row changes; the secret's ciphertext never does, so the
//! engine keeps signing throughout (cached keys are untouched, and cold loads open rows
//! wrapped under either KEK through the keyring). Each row is replaced with a
//! compare-and-set on its old KEK, so a concurrent rotation or writer is never overwritten.
//! The job is resumable: a new run finds exactly the rows still on an old KEK.

use std::sync::Arc;

use keycast_core::{KeyId, KeyManager, KeyStore, Keyring, Result};

/// Tunables of [`rotate`].
#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// Rows read per page.
    pub batch_size: u32,
}

impl Default for RotationOptions {
    fn default() -> Self {
        Self { batch_size: 100 }
    }
}

/// Progress so far; passed to the progress callback after every batch and returned at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Rows rewrapped under the primary KEK by this run.
    pub rewrapped: u64,
    /// Rows changed by someone else between read and write (compare-and-set lost).
    pub skipped_concurrent: u64,
    /// Rows that could not be rewrapped, with the reason (no key material in it).
    pub failed: Vec<(KeyId, String)>,
}

/// Rewraps every row not yet under `keyring`'s primary KEK. Store errors abort the run
/// (it can be resumed); per-row KMS failures are reported and skipped.
pub async fn rotate(
    store: Arc<dyn KeyStore>,
    keyring: &Keyring,
    options: &RotationOptions,
    mut progress: impl FnMut(&RotationReport),
) -> Result<RotationReport> {
    let primary = keyring.id().clone();
    let mut report = RotationReport::default();
    let mut cursor = None;
    loop {
        let page = store
            .keys_not_wrapped_by(&primary, cursor, options.batch_size.max(1))
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        for key in page {
            let old = &key.envelope.wrapped_dek;
            match keyring.rewrap(old, &key.binding().dek_aad()).await {
                Ok(new) => {
                    if store.replace_wrapped_dek(key.id, &old.kek, &new).await? {
                        report.rewrapped += 1;
                    } else {
                        report.skipped_concurrent += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(key = %key.id, error = %e, "cannot rewrap key");
                    report.failed.push((key.id, e.to_string()));
                }
            }
        }
        progress(&report);
    }
    Ok(report)
}
