//! Answers one decrypted NIP-46 request for one authorization, through the custody engine.
//!
//! Transport-free: the relay service decrypts the event, finds the authorization by the
//! bunker pubkey it was addressed to, calls [`RequestHandler::handle`], and encrypts and
//! signs the reply. Session rules live here:
//! - `connect` must name this signer (or the user key, or nothing), and a client that is
//!   not yet bound must present the authorization's single-use connect secret; a client
//!   already bound reconnects idempotently, with or without it;
//! - every other method, `get_public_key` and `ping` included, needs a bound client;
//! - `logout` unbinds the client.

use std::sync::Arc;

use keycast_core::nostr::{Event, PublicKey};
use keycast_core::{
    Authorization, AuthorizationId, BearerSecret, Caller, Custody, Error, Interpret, Interpreted,
    KeyId, ReplySeal, TransportScheme,
};

use crate::protocol::message::{connect_target_ok, Command, Nip46Request};
use crate::protocol::response::{result_text, Nip46Response};

/// What [`RequestHandler::handle_sealed`] answers.
#[derive(Debug)]
pub enum Answer {
    /// A reply for the caller to encrypt and sign.
    Reply(Nip46Response),
    /// The reply event, encrypted and signed.
    Sealed(Event),
}

/// A request once its session rules are checked.
enum Step {
    /// Answered by the session rules themselves (connect, ping, logout, …).
    Reply(Nip46Response),
    /// A custody operation to run as `caller`.
    Run {
        id: String,
        caller: Caller,
        op: keycast_core::Request,
    },
}

/// The reply to a request refused or failed with `e`.
fn refusal(id: String, e: Error) -> Nip46Response {
    match e {
        Error::NeedsApproval(url) => Nip46Response::auth_url(id, url),
        e => Nip46Response::error(id, e.to_string()),
    }
}

/// What a bound client's requests run as, and how connects are checked.
#[derive(Debug, Clone)]
pub struct RequestHandler {
    custody: Custody,
}

impl RequestHandler {
    /// A handler over `custody` (whose store holds the authorizations).
    pub fn new(custody: Custody) -> Self {
        Self { custody }
    }

    /// Answers `request` from `client`, sent to the bunker of `authorization`.
    /// Never fails: every problem becomes an error reply with the request id.
    pub async fn handle(
        &self,
        authorization: AuthorizationId,
        client: PublicKey,
        request: Nip46Request,
    ) -> Nip46Response {
        let id = request.id.clone();
        let answered = match self.check(authorization, client, request).await {
            Ok(Step::Reply(reply)) => Ok(reply),
            Ok(Step::Run { id, caller, op }) => self
                .custody
                .handle(caller, op)
                .await
                .and_then(|response| Ok(Nip46Response::ok(id, result_text(response)?))),
            Err(e) => Err(e),
        };
        answered.unwrap_or_else(|e| refusal(id, e))
    }

    /// [`RequestHandler::handle`], except that a custody operation that succeeds comes back
    /// as its reply event, already encrypted to `client` in `scheme` and signed with the
    /// `bunker` key, sealed in the operation's own crypto-pool job
    /// ([`Custody::handle_sealed`]). Everything else (session methods, refusals, failures)
    /// is a [`Nip46Response`] for the caller to seal.
    pub async fn handle_sealed(
        &self,
        authorization: AuthorizationId,
        client: PublicKey,
        request: Nip46Request,
        bunker: KeyId,
        scheme: TransportScheme,
    ) -> Answer {
        let id = request.id.clone();
        let answered = match self.check(authorization, client, request).await {
            Ok(Step::Reply(reply)) => Ok(Answer::Reply(reply)),
            Ok(Step::Run { id, caller, op }) => {
                let seal = ReplySeal {
                    bunker,
                    peer: client,
                    scheme,
                    build: Box::new(move |response| {
                        Ok(Nip46Response::ok(id, result_text(response.clone())?).to_json())
                    }),
                };
                match self.custody.handle_sealed(caller, op, seal).await {
                    Ok((_, sealed)) => sealed.map(Answer::Sealed),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        answered.unwrap_or_else(|e| Answer::Reply(refusal(id, e)))
    }

    /// The custody engine's fast path's reading of a decrypted request
    /// ([`Custody::answer_transport`]): a custody operation from a client bound to `auth`,
    /// and its reply (the result, or the error as [`RequestHandler::handle`] words it).
    /// Anything else (session methods, unknown methods, a client not bound in this copy
    /// of the authorization, a request that does not parse) is left to
    /// [`RequestHandler::handle_sealed`].
    pub fn interpret(auth: Arc<Authorization>, client: PublicKey) -> Interpret {
        Box::new(move |plaintext| {
            if !auth.has_client(&client) {
                return None;
            }
            let request = Nip46Request::parse(plaintext).ok()?;
            let id = request.id;
            let op = request.command.into_request().ok()?;
            Some(Interpreted {
                request: op,
                build: Box::new(move |outcome| match outcome {
                    Ok(response) => {
                        let text = result_text(response.clone())?;
                        Ok(Nip46Response::ok(id.clone(), text).to_json())
                    }
                    Err(e) => Ok(refusal(id.clone(), e.clone()).to_json()),
                }),
            })
        })
    }

    /// The session rules for `request`: a reply of their own, or the custody operation to
    /// run for a bound client.
    async fn check(
        &self,
        authorization: AuthorizationId,
        client: PublicKey,
        request: Nip46Request,
    ) -> keycast_core::Result<Step> {
        let id = request.id;
        let auth = self.custody.authorization(authorization).await?;
        auth.check_active(keycast_core::nostr::Timestamp::now())?;
        if let Command::Connect { remote, secret, .. } = request.command {
            return self
                .connect(&auth, client, &remote, secret.as_deref(), id)
                .await
                .map(Step::Reply);
        }
        if let Command::Unknown(method) = &request.command {
            return Ok(Step::Reply(Nip46Response::error(
                id,
                format!("unknown method: {method}"),
            )));
        }
        self.require_bound(&auth, client).await?;
        let c = &self.custody;
        let command = match request.command.into_request() {
            Ok(op) => {
                let caller = Caller::Authorization(auth.id);
                return Ok(Step::Run { id, caller, op });
            }
            Err(session) => *session,
        };
        Ok(Step::Reply(match command {
            Command::Ping => Nip46Response::ok(id, "pong"),
            Command::SwitchRelays => {
                let relays = (!auth.relays.is_empty()).then_some(auth.relays.as_slice());
                Nip46Response::switch_relays(id, relays)
            }
            Command::Logout => {
                c.remove_client(auth.id, &client).await?;
                Nip46Response::ok(id, "ack")
            }
            // Handled above; listed so a new method cannot be forgotten silently.
            _ => Nip46Response::error(id, "unexpected method"),
        }))
    }

    async fn connect(
        &self,
        auth: &Authorization,
        client: PublicKey,
        remote: &str,
        secret: Option<&str>,
        id: String,
    ) -> keycast_core::Result<Nip46Response> {
        let user = self.custody.public_key_of(auth.key_id).await?;
        if !connect_target_ok(remote, &auth.bunker_pubkey, &user) {
            return Err(Error::Denied("connect names another signer".into()));
        }
        if auth.has_client(&client) {
            return Ok(Nip46Response::ok(id, "ack"));
        }
        let Some(secret) = secret else {
            return Err(Error::Denied("a connect secret is required".into()));
        };
        let digest = BearerSecret::from_presented(secret).digest();
        match self
            .custody
            .redeem_connect_secret(auth.id, &digest, client)
            .await
        {
            Ok(_) => Ok(Nip46Response::ok(id, "ack")),
            Err(Error::Conflict(_)) => Err(Error::Denied(
                "connect secret is invalid or already used".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// The cached authorization may predate a connect made through another instance, so a
    /// miss is checked once against the store before refusing.
    async fn require_bound(
        &self,
        auth: &Authorization,
        client: PublicKey,
    ) -> keycast_core::Result<()> {
        if auth.has_client(&client) {
            return Ok(());
        }
        if self
            .custody
            .reload_authorization(auth.id)
            .await?
            .has_client(&client)
        {
            return Ok(());
        }
        Err(Error::Denied(
            "not connected: send connect with the secret first".into(),
        ))
    }
}
