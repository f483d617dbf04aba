//! Requests a human approves one by one (the `require_approval` permission).
//!
//! [`crate::PolicyAuthorizer`] asks the desk about each such request: the first time it
//! is recorded as waiting and answered [`crate::Decision::NeedsApproval`] with the
//! desk's URL for the authorization (NIP-46 `auth_url`); once someone decided through
//! [`ApprovalDesk::decide`], the same request (same method and arguments) gets that
//! decision, once. Everything lives in this process's memory and expires after the TTL:
//! a restart forgets what waits, and a client asks again.

use std::time::Duration;

use moka::sync::Cache;
use nostr::{Timestamp, ToBech32};

use crate::crypto::secret::SecretDigest;
use crate::ids::AuthorizationId;
use crate::model::request::Request;

/// Requests kept waiting at most, over all authorizations; beyond that the least recently
/// used are dropped (their clients ask again).
pub(crate) const MAX_WAITING: u64 = 10_000;

/// A request waiting for a decision, as a person sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRequest {
    /// Names it in [`ApprovalDesk::decide`]: hex SHA-256 of its method and arguments.
    pub id: String,
    /// What it would do, in words: the kind and the start of the content of an event, or
    /// the peer of an encryption (never a plaintext).
    pub summary: String,
    /// When it was first asked.
    pub asked_at: Timestamp,
}

/// The waiting requests and the decisions not yet used, per authorization.
#[derive(Debug)]
pub struct ApprovalDesk {
    url_base: String,
    waiting: Cache<(AuthorizationId, SecretDigest), WaitingRequest>,
    decided: Cache<(AuthorizationId, SecretDigest), bool>,
}

impl ApprovalDesk {
    /// A desk whose approval page for authorization `a` is `<url_base>/<a>`; requests and
    /// decisions are forgotten `ttl` after they were made.
    pub fn new(url_base: impl Into<String>, ttl: Duration) -> Self {
        Self {
            url_base: url_base.into().trim_end_matches('/').to_owned(),
            waiting: Cache::builder()
                .max_capacity(MAX_WAITING)
                .time_to_live(ttl)
                .build(),
            decided: Cache::builder()
                .max_capacity(MAX_WAITING)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Where a person approves the requests of `authorization`.
    pub fn url(&self, authorization: AuthorizationId) -> String {
        format!("{}/{authorization}", self.url_base)
    }

    /// The requests of `authorization` waiting now, oldest first.
    pub fn waiting(&self, authorization: AuthorizationId) -> Vec<WaitingRequest> {
        let mut list: Vec<WaitingRequest> = self
            .waiting
            .iter()
            .filter(|(k, _)| k.0 == authorization)
            .map(|(_, w)| w)
            .collect();
        list.sort_by(|a, b| (a.asked_at, &a.id).cmp(&(b.asked_at, &b.id)));
        list
    }

    /// How many requests wait now, per authorization (one pass over the desk).
    pub fn waiting_counts(&self) -> std::collections::HashMap<AuthorizationId, usize> {
        let mut counts = std::collections::HashMap::new();
        for (key, _) in self.waiting.iter() {
            *counts.entry(key.0).or_insert(0) += 1;
        }
        counts
    }

    /// Approves or refuses the waiting request `id` of `authorization`; false when no such
    /// request waits (unknown, already decided, or expired).
    pub fn decide(&self, authorization: AuthorizationId, id: &str, approve: bool) -> bool {
        let Some(digest) = parse_id(id) else {
            return false;
        };
        let key = (authorization, digest);
        if self.waiting.remove(&key).is_none() {
            return false;
        }
        self.decided.insert(key, approve);
        true
    }

    /// The decision about `request`, used up; or `None` after recording it as waiting.
    pub(crate) fn consult(
        &self,
        authorization: AuthorizationId,
        request: &Request,
    ) -> Option<bool> {
        let key = (authorization, fingerprint(request));
        if let Some(decision) = self.decided.remove(&key) {
            return Some(decision);
        }
        if !self.waiting.contains_key(&key) {
            self.waiting.insert(
                key,
                WaitingRequest {
                    id: hex::encode(key.1.as_bytes()),
                    summary: summary(request),
                    asked_at: Timestamp::now(),
                },
            );
        }
        None
    }
}

fn parse_id(id: &str) -> Option<SecretDigest> {
    <[u8; 32] as hex::FromHex>::from_hex(id)
        .ok()
        .map(SecretDigest::from_bytes)
}

/// SHA-256 over the method and every argument, each length-prefixed, so two requests
/// share a fingerprint only if they are the same request.
fn fingerprint(request: &Request) -> SecretDigest {
    let mut bytes = Vec::new();
    let mut put = |part: &[u8]| {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    };
    put(request.method().as_str().as_bytes());
    match request {
        Request::GetPublicKey => {}
        Request::SignEvent(t) => {
            put(&t.kind.as_u16().to_be_bytes());
            put(t.content.as_bytes());
            put(serde_json::to_string(&t.tags)
                .unwrap_or_default()
                .as_bytes());
            put(&t.created_at.map_or(u64::MAX, |c| c.as_secs()).to_be_bytes());
            put(&t.pubkey.map(|p| p.to_bytes()).unwrap_or([0; 32]));
        }
        Request::Nip44Encrypt { peer, plaintext } | Request::Nip04Encrypt { peer, plaintext } => {
            put(&peer.to_bytes());
            put(plaintext.as_bytes());
        }
        Request::Nip44Decrypt { peer, ciphertext } | Request::Nip04Decrypt { peer, ciphertext } => {
            put(&peer.to_bytes());
            put(ciphertext.as_bytes());
        }
    }
    SecretDigest::of(&bytes)
}

fn summary(request: &Request) -> String {
    let npub = |p: &nostr::PublicKey| p.to_bech32().unwrap_or_else(|_| p.to_hex());
    match request {
        Request::GetPublicKey => "read the public key".to_owned(),
        Request::SignEvent(t) => super::event_summary::describe(t),
        Request::Nip44Encrypt { peer, plaintext } | Request::Nip04Encrypt { peer, plaintext } => {
            format!(
                "encrypt a message of {} characters to {}",
                plaintext.chars().count(),
                npub(peer)
            )
        }
        Request::Nip44Decrypt { peer, .. } | Request::Nip04Decrypt { peer, .. } => {
            format!("decrypt a message from {}", npub(peer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::EventTemplate;

    fn note(content: &str) -> Request {
        Request::SignEvent(
            EventTemplate::from_json(&format!(r#"{{"kind":1,"content":"{content}","tags":[]}}"#))
                .expect("template"),
        )
    }

    #[test]
    fn a_decision_answers_the_same_request_once() {
        let desk = ApprovalDesk::new("https://k.example/ui/approvals/", Duration::from_secs(60));
        let a = AuthorizationId::random();
        assert_eq!(desk.url(a), format!("https://k.example/ui/approvals/{a}"));
        assert_eq!(desk.consult(a, &note("hi")), None);
        assert_eq!(
            desk.consult(a, &note("hi")),
            None,
            "asking again keeps one entry"
        );
        let waiting = desk.waiting(a);
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            waiting[0].summary,
            "sign a note (kind 1); content: hi; no tags"
        );
        assert!(desk.waiting(AuthorizationId::random()).is_empty());
        assert_eq!(desk.waiting_counts().get(&a), Some(&1));

        assert!(
            !desk.decide(AuthorizationId::random(), &waiting[0].id, true),
            "another authorization"
        );
        assert!(!desk.decide(a, "zz", true));
        assert!(desk.decide(a, &waiting[0].id, true));
        assert!(!desk.decide(a, &waiting[0].id, false), "decided already");
        assert_eq!(
            desk.consult(a, &note("other")),
            None,
            "a different request still waits"
        );
        assert_eq!(desk.consult(a, &note("hi")), Some(true));
        assert_eq!(
            desk.consult(a, &note("hi")),
            None,
            "used once, then it waits again"
        );

        let id = desk
            .waiting(a)
            .iter()
            .find(|w| w.summary.contains("content: hi;"))
            .expect("waits")
            .id
            .clone();
        assert!(desk.decide(a, &id, false));
        assert_eq!(desk.consult(a, &note("hi")), Some(false));
    }

    #[test]
    fn summaries_never_show_a_plaintext_and_cut_long_content() {
        let peer = nostr::Keys::generate().public_key();
        let secret = Request::Nip44Encrypt {
            peer,
            plaintext: "my secret plan".into(),
        };
        let s = summary(&secret);
        assert!(
            !s.contains("secret plan") && s.contains("14 characters"),
            "{s}"
        );
        let long = note(&"x".repeat(1000));
        assert_eq!(summary(&long).chars().filter(|c| *c == 'x').count(), 280);
        assert!(summary(&long).contains("x…;"));
        assert_ne!(fingerprint(&note("a")), fingerprint(&note("b")));
        assert_ne!(
            fingerprint(&secret),
            fingerprint(&Request::Nip04Encrypt {
                peer,
                plaintext: "my secret plan".into()
            })
        );
    }
}
