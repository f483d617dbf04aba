//! The `auth_url` challenge: a request the Authorizer holds for a human gets
//! `result:"auth_url"` at once, and the real result under the same id after approval.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::raw::RawClient;
use keycast_core::nostr::{Event, JsonUtil, Timestamp};
use keycast_core::{AuthContext, Authorizer, Decision, Request};

const APPROVE_AT: &str = "https://keycast.example/approve/42";
const WAIT: Duration = Duration::from_secs(5);

/// Holds every `sign_event` for approval until `approved`; allows everything else.
#[derive(Debug, Default)]
struct Gate {
    approved: AtomicBool,
}

#[async_trait]
impl Authorizer for Gate {
    async fn authorize(
        &self,
        _ctx: &AuthContext<'_>,
        request: &Request,
    ) -> keycast_core::Result<Decision> {
        Ok(match request {
            Request::SignEvent(_) if !self.approved.load(Ordering::SeqCst) => {
                Decision::NeedsApproval(APPROVE_AT.into())
            }
            _ => Decision::Allow,
        })
    }
}

async fn connected(s: &common::Setup) -> RawClient {
    let mut c = RawClient::new(&s.url, s.bunker_pubkey).await;
    let connect = format!(
        r#"{{"id":"c1","method":"connect","params":["","{}"]}}"#,
        s.secret
    );
    c.send(&c.request(&connect, Timestamp::now(), false)).await;
    assert_eq!(c.reply(WAIT).await.expect("connect").0["result"], "ack");
    c
}

fn sign_request(id: &str) -> String {
    let template = serde_json::json!({"kind": 1, "content": "needs a human", "tags": [], "created_at": 1_700_000_000});
    serde_json::json!({"id": id, "method": "sign_event", "params": [template.to_string()]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_result_follows_the_challenge_under_the_same_id() {
    let gate = Arc::new(Gate::default());
    let s = common::setup_authorized_by(gate.clone(), |c| c).await;
    let mut c = connected(&s).await;

    c.send(&c.request(&sign_request("s1"), Timestamp::now(), false))
        .await;
    let (reply, _) = c.reply(WAIT).await.expect("challenge");
    assert_eq!(reply["id"], "s1");
    assert_eq!(reply["result"], "auth_url");
    assert_eq!(reply["error"], APPROVE_AT);
    assert_eq!(s.bunker.stats().approvals_pending, 1);

    // Resuming before the human acted changes nothing and repeats no challenge.
    s.bunker.resume_approvals(s.auth).await;
    assert!(c.reply(Duration::from_millis(700)).await.is_none());
    assert_eq!(s.bunker.stats().approvals_pending, 1);

    gate.approved.store(true, Ordering::SeqCst);
    s.bunker.resume_approvals(s.auth).await;
    let (reply, _) = c.reply(WAIT).await.expect("result after approval");
    assert_eq!(reply["id"], "s1", "same id as the challenge");
    let event = Event::from_json(reply["result"].as_str().expect("event json")).expect("event");
    event.verify().expect("signed");
    assert_eq!(event.pubkey, s.user);
    assert_eq!(event.content, "needs a human");
    let stats = s.bunker.stats();
    assert_eq!((stats.approvals_pending, stats.approvals_resumed), (0, 1));
    assert!(
        c.reply(Duration::from_millis(700)).await.is_none(),
        "exactly one result"
    );
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_never_comes_ends_in_an_error_reply() {
    let s = common::setup_authorized_by(Arc::new(Gate::default()), |mut c| {
        c.approval_timeout = Duration::from_secs(1);
        c
    })
    .await;
    let mut c = connected(&s).await;
    c.send(&c.request(&sign_request("s2"), Timestamp::now(), true))
        .await;
    let (reply, legacy) = c.reply(WAIT).await.expect("challenge");
    assert_eq!(reply["result"], "auth_url");
    assert!(legacy, "NIP-04 request, NIP-04 challenge");
    let (reply, legacy) = c.reply(WAIT).await.expect("timeout reply");
    assert_eq!(reply["id"], "s2");
    assert_eq!(reply["error"], "approval timed out");
    assert!(reply.get("result").is_none(), "{reply}");
    assert!(legacy, "the late reply keeps the request's scheme");
    let stats = s.bunker.stats();
    assert_eq!((stats.approvals_pending, stats.approvals_expired), (0, 1));
    s.bunker.shutdown().await;
}
