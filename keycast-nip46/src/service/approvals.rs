//! Requests answered with an `auth_url` challenge, kept until a human decides.
//!
//! When the Authorizer answers `NeedsApproval`, the client gets
//! `{"id", "result":"auth_url", "error":<url>}` and keeps waiting on the same id. The
//! request stays here until [`super::Bunker::resume_approvals`] re-runs it (the app calls
//! that once the human acted) and the real result, or the refusal, goes out under the
//! same id; or until it expires and the client gets an error instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::PublicKey;
use keycast_core::{Authorization, AuthorizationId, TransportScheme};

use crate::protocol::message::Nip46Request;

/// Requests kept waiting at most, over all authorizations; beyond that a new challenge
/// is still sent, but the request is not kept (the client has to ask again).
pub(crate) const MAX_PENDING: usize = 1024;

/// One request waiting for approval.
pub(crate) struct Pending {
    pub(crate) auth: Arc<Authorization>,
    pub(crate) client: PublicKey,
    pub(crate) scheme: TransportScheme,
    pub(crate) request: Nip46Request,
    pub(crate) since: Instant,
}

/// Waiting requests by authorization.
#[derive(Default)]
pub(crate) struct Approvals {
    waiting: Mutex<HashMap<AuthorizationId, Vec<Pending>>>,
}

impl Approvals {
    /// Keeps `pending`; false when full. A repeat of the same request id from the same
    /// client replaces the earlier one, so retries do not pile up.
    pub(crate) fn hold(&self, pending: Pending) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = waiting.get_mut(&pending.auth.id) {
            list.retain(|p| !(p.client == pending.client && p.request.id == pending.request.id));
        }
        if waiting.values().map(Vec::len).sum::<usize>() >= MAX_PENDING {
            return false;
        }
        waiting.entry(pending.auth.id).or_default().push(pending);
        true
    }

    /// Takes every request waiting on `authorization`.
    pub(crate) fn take(&self, authorization: AuthorizationId) -> Vec<Pending> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.remove(&authorization).unwrap_or_default()
    }

    /// Takes the requests that have waited longer than `timeout`.
    pub(crate) fn take_expired(&self, timeout: Duration) -> Vec<Pending> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let mut expired = Vec::new();
        waiting.retain(|_, list| {
            let (old, young): (Vec<_>, Vec<_>) =
                list.drain(..).partition(|p| p.since.elapsed() >= timeout);
            expired.extend(old);
            *list = young;
            !list.is_empty()
        });
        expired
    }

    /// Requests waiting now.
    pub(crate) fn len(&self) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.values().map(Vec::len).sum()
    }
}
