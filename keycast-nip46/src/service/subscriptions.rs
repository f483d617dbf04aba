//! What intake knows about each bunker key.
//!
//! [`Bindings`] is intake's view of the active bunker keys and the clients bound to each,
//! kept with the subscriptions (`book.rs`, `subscribe.rs`): intake drops requests to
//! unknown bunker keys and tells bound clients from strangers without a store read or any
//! crypto.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use keycast_core::nostr::PublicKey;
use keycast_core::Authorization;

/// Active bunker keys and their bound clients, as intake sees them.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    /// Boxed slices, not `Vec`s: 8 bytes less per active authorization.
    clients: RwLock<HashMap<PublicKey, Box<[PublicKey]>>>,
}

/// A view being built from a full listing's pages, for [`Bindings::replace`].
#[derive(Debug, Default)]
pub(crate) struct NextBindings(HashMap<PublicKey, Box<[PublicKey]>>);

impl NextBindings {
    /// Adds the active authorizations of one page.
    pub(crate) fn extend(&mut self, active: &[Authorization]) {
        self.0.extend(
            active
                .iter()
                .map(|a| (a.bunker_pubkey, a.client_pubkeys.as_slice().into())),
        );
    }
}

impl Bindings {
    /// Replaces the view with `next`, built from a full listing.
    pub(crate) fn replace(&self, next: NextBindings) {
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = next.0;
    }

    /// `None` when `bunker` is no active authorization's; else whether `client` is bound.
    pub(crate) fn is_bound(&self, bunker: &PublicKey, client: &PublicKey) -> Option<bool> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        clients.get(bunker).map(|c| c.contains(client))
    }

    /// Adds or replaces the active authorization `auth`.
    pub(crate) fn set(&self, auth: &Authorization) {
        self.clients
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(auth.bunker_pubkey, auth.client_pubkeys.as_slice().into());
    }

    /// Forgets `bunker` (no longer an active authorization's).
    pub(crate) fn remove(&self, bunker: &PublicKey) {
        self.clients
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(bunker);
    }

    /// Updates one bunker's clients after a connect or logout handled here; a bunker no
    /// longer in the view (revoked meanwhile) is not added back.
    pub(crate) fn update(&self, auth: &Authorization) {
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get_mut(&auth.bunker_pubkey) {
            *c = auth.client_pubkeys.as_slice().into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::book::tests::auth;
    use keycast_core::nostr::Keys;

    #[test]
    fn bindings_know_active_bunkers_and_their_clients() {
        let a = auth(&[]);
        let b = Bindings::default();
        let mut next = NextBindings::default();
        next.extend(std::slice::from_ref(&a));
        b.replace(next);
        let stranger = Keys::generate().public_key();
        assert_eq!(
            b.is_bound(&a.bunker_pubkey, &a.client_pubkeys[0]),
            Some(true)
        );
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), Some(false));
        assert_eq!(b.is_bound(&stranger, &stranger), None);
        let mut connected = a.clone();
        connected.client_pubkeys.push(stranger);
        b.update(&connected);
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), Some(true));
        b.remove(&a.bunker_pubkey);
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), None);
        b.set(&connected);
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), Some(true));
        b.replace(NextBindings::default());
        b.update(&connected);
        assert_eq!(
            b.is_bound(&a.bunker_pubkey, &stranger),
            None,
            "a revoked bunker is not added back"
        );
    }
}
