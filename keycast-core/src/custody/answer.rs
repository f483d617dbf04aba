//! The NIP-46 fast path: a request opened, read, authorized, run, and its reply built,
//! encrypted and signed, in one crypto-pool job, with the audit record stored before the
//! reply is released. Whatever that one job cannot decide without I/O (a session method,
//! a client not yet bound, a refusal, an authorizer that must wait, a key or policy that
//! is not loaded) comes back opened, for the full path.

use std::sync::Arc;

use nostr::{Event, PublicKey, Timestamp};

use super::{
    admit_checks, audit_record, operation, record_result, transport, validate, Custody, LoadedKey,
};
use crate::error::{Error, Result};
use crate::model::audit::AuditRecord;
use crate::model::authorization::Authorization;
use crate::model::policy::Policy;
use crate::model::request::{Request, Response};
use crate::traits::authorizer::{AuthContext, Decision};

use super::transport::TransportScheme;

/// Reads a decrypted request, on the crypto pool: the operation it asks of the
/// authorization's key and how to word its reply, or `None` for the full path.
pub type Interpret = Box<dyn FnOnce(&str) -> Option<Interpreted> + Send>;

/// Builds the reply's plaintext from the operation's outcome, on the crypto pool. Called
/// again with the error when the reply to a success cannot be built or sealed (too large for
/// NIP-44, say), so the client still hears why.
pub type BuildAnswer = Box<dyn Fn(std::result::Result<&Response, &Error>) -> Result<String> + Send>;

/// An operation read from a request by an [`Interpret`].
pub struct Interpreted {
    /// What to run with the authorization's key.
    pub request: Request,
    /// The reply's plaintext, for success or failure.
    pub build: BuildAnswer,
}

impl std::fmt::Debug for Interpreted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreted")
            .field("method", &self.request.method())
            .finish_non_exhaustive()
    }
}

/// A request sent to an authorization's bunker key, as it came off the relay.
pub struct TransportRequest {
    /// The authorization whose bunker key the request was sent to.
    pub authorization: Arc<Authorization>,
    /// The client that sent it (the event's author).
    pub peer: PublicKey,
    /// The event's encrypted content.
    pub content: String,
    /// How to read it once decrypted.
    pub interpret: Interpret,
}

impl std::fmt::Debug for TransportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportRequest")
            .field("authorization", &self.authorization.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// What [`Custody::answer_transport`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportAnswer {
    /// Answered in one job: the operation's result and its reply event (encrypted to the
    /// client and signed by the bunker key), released after the audit record was stored.
    Sealed {
        /// The operation's result (a failure is in the reply too).
        result: Result<Response>,
        /// The reply event, or why it could not be built.
        reply: Result<Box<Event>>,
    },
    /// Decrypted only: for the full path.
    Opened {
        /// The encryption the request used (replies use the same).
        scheme: TransportScheme,
        /// The request.
        plaintext: String,
    },
    /// The operation ran but its audit record could not be stored, so nothing of it is
    /// released: the caller answers with `error`.
    Unrecorded {
        /// The encryption the request used.
        scheme: TransportScheme,
        /// The request.
        plaintext: String,
        /// Why the record was not stored.
        error: Error,
    },
}

/// What the fast path needs loaded before its job: the user's key and the policy.
struct Loaded {
    key: Arc<LoadedKey>,
    policy: Option<Arc<Policy>>,
}

/// What the job did.
enum Ran {
    Opened(TransportScheme, String),
    Done(Box<Done>),
}

/// An operation the job ran, with its reply and the audit record to store first.
struct Done {
    scheme: TransportScheme,
    plaintext: String,
    record: AuditRecord,
    result: Result<Response>,
    reply: Result<Box<Event>>,
}

impl Custody {
    /// Answers a NIP-46 request in one crypto-pool job when it can (see the module docs):
    /// decrypts `content` with the authorization's bunker key, lets `interpret` read it,
    /// admits the operation (revocation, expiry, tenant, key kind, request limits and
    /// [`crate::Authorizer::authorize_now`]), runs it, and seals its reply. Fails only if
    /// the request cannot be opened (bunker key unavailable, undecryptable content).
    pub async fn answer_transport(&self, t: TransportRequest) -> Result<TransportAnswer> {
        let auth = t.authorization;
        let bunker = self.bunker_key(auth.bunker_key_id).await?;
        let loaded = self.load_for_fast_path(&auth).await;
        let custody = self.clone();
        let (peer, content, interpret) = (t.peer, t.content, t.interpret);
        let job = move || custody.fast_job(&auth, &bunker, loaded, peer, &content, interpret);
        match self.inner.pool.run(job).await?? {
            Ran::Opened(scheme, plaintext) => Ok(TransportAnswer::Opened { scheme, plaintext }),
            Ran::Done(done) => {
                let Done {
                    scheme,
                    plaintext,
                    mut record,
                    result,
                    reply,
                } = *done;
                record_result(&mut record, &result);
                match self.inner.audit.record(record).await {
                    Ok(()) => Ok(TransportAnswer::Sealed { result, reply }),
                    Err(error) => Ok(TransportAnswer::Unrecorded {
                        scheme,
                        plaintext,
                        error,
                    }),
                }
            }
        }
    }

    /// The user's key and the policy, if both are at hand; `None` sends the request down
    /// the full path, which reports what is missing.
    async fn load_for_fast_path(&self, auth: &Authorization) -> Option<Loaded> {
        let key = self.signing_key(auth.key_id).await.ok()?;
        let policy = self.policy_of(auth).await.ok()?;
        Some(Loaded { key, policy })
    }

    /// The one job: open, read, admit, run, seal.
    fn fast_job(
        &self,
        auth: &Authorization,
        bunker: &LoadedKey,
        loaded: Option<Loaded>,
        peer: PublicKey,
        content: &str,
        interpret: Interpret,
    ) -> Result<Ran> {
        let convs = self.inner.conversations.as_ref();
        let (scheme, plaintext) =
            transport::open_payload(convs, auth.bunker_key_id, &bunker.keys, &peer, content)?;
        let Some(Loaded { key, policy }) = loaded else {
            return Ok(Ran::Opened(scheme, plaintext));
        };
        let Some(Interpreted { request, build }) = interpret(&plaintext) else {
            return Ok(Ran::Opened(scheme, plaintext));
        };
        let now = Timestamp::now();
        if !self.admits_now(&key, auth, policy.as_deref(), &request, now) {
            return Ok(Ran::Opened(scheme, plaintext));
        }
        let record = audit_record(now, &key, auth.key_id, Some(auth), &request);
        let result = operation(convs, auth.key_id, &key.keys, request, now);
        let seal = |json: String| {
            transport::seal(convs, auth.bunker_key_id, &bunker.keys, peer, scheme, &json)
                .map(Box::new)
        };
        let mut reply = build(result.as_ref()).and_then(seal);
        if let (Ok(_), Err(e)) = (&result, &reply) {
            let e = e.clone();
            reply = build(Err(&e)).and_then(seal);
        }
        Ok(Ran::Done(Box::new(Done {
            scheme,
            plaintext,
            record,
            result,
            reply,
        })))
    }

    /// Whether `request` is admitted without I/O: every check of the full path, with the
    /// authorizer's [`crate::Authorizer::authorize_now`]; `false` for anything else.
    fn admits_now(
        &self,
        key: &LoadedKey,
        auth: &Authorization,
        policy: Option<&Policy>,
        request: &Request,
        now: Timestamp,
    ) -> bool {
        if validate::check_limits(&self.inner.cfg, request).is_err()
            || admit_checks(key, Some(auth), request, now).is_err()
        {
            return false;
        }
        let ctx = AuthContext {
            tenant_id: key.tenant_id,
            key_id: auth.key_id,
            key_pubkey: key.keys.public_key(),
            authorization: Some(auth),
            policy,
            now,
        };
        matches!(
            self.inner.authorizer.authorize_now(&ctx, request),
            Some(Ok(Decision::Allow))
        )
    }
}
