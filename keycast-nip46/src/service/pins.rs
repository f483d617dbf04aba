//! Bunker keys whose URI this instance handed out lately: it answers requests to them
//! even when another instance owns them (the claim keeps answers single), until the owner
//! has heard of the authorization (`subscribe.rs`, `PIN`). Shared by intake and the
//! transport's arrival filter.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use keycast_core::nostr::PublicKey;
use keycast_core::AuthorizationId;

#[derive(Debug, Default)]
pub(crate) struct Pins(Mutex<HashMap<PublicKey, (AuthorizationId, Instant)>>);

impl Pins {
    /// Whether this instance handed out `bunker`'s URI within `PIN`: it answers requests
    /// to it even if another instance owns it, until the owner has heard of it.
    pub(crate) fn contains(&self, bunker: &PublicKey) -> bool {
        let pins = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        !pins.is_empty() && pins.contains_key(bunker)
    }

    /// Keys pinned now.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Pins `bunker` (authorization `id`) until `until`.
    pub(crate) fn pin(&self, bunker: PublicKey, id: AuthorizationId, until: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bunker, (id, until));
    }

    /// Forgets pins that ran out by `now`; returns their authorizations.
    pub(crate) fn unpin_due(&self, now: Instant) -> Vec<AuthorizationId> {
        let mut pins = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        pins.retain(|_, (id, until)| {
            let keep = *until > now;
            if !keep {
                due.push(*id);
            }
            keep
        });
        due
    }
}
