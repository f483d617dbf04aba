//! Several `keycast-server` processes in cluster mode: one fresh Postgres database, one
//! master-key file, one relay (in this process) and a Redis, each instance with its own
//! data dir and node id. Requires `KEYCAST_TEST_POSTGRES_URL` and a Redis URL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keycast_core::nostr::{PublicKey, RelayUrl};
use keycast_server::embedded_relay::EmbeddedRelay;
use keycast_storage::testing::FreshDb;
use reqwest::Method;
use serde_json::{json, Value};

use super::server::{Account, Served};
use super::Env;

/// The heartbeat TTL the tests run with: a killed instance's share moves within 2.5 s.
pub const TTL: Duration = Duration::from_secs(2);

/// One authorization made for the tests.
pub struct Made {
    pub id: String,
    pub bunker: PublicKey,
    pub secret: String,
    pub token: String,
}

pub struct TestCluster {
    pub nodes: Vec<Option<Served>>,
    pub relay: EmbeddedRelay,
    pub db: Option<FreshDb>,
    pub redis_url: String,
    pub prefix: String,
    shared: PathBuf,
    extra: Vec<(&'static str, String)>,
}

/// The Redis the suite uses, or `None` (skipped) when unset outside CI.
pub fn redis_url() -> Option<String> {
    keycast_test_support::require_service("KEYCAST_TEST_REDIS_URL")
}

impl TestCluster {
    /// Starts `n` instances one after another (each ready before the next), with `extra`
    /// settings on all of them.
    pub async fn start(
        n: usize,
        redis_url: &str,
        extra: &[(&'static str, String)],
    ) -> Option<Self> {
        let admin = keycast_storage::testing::postgres_url()?;
        let db = FreshDb::create(&admin).await;
        let relay = EmbeddedRelay::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("relay");
        let shared = std::env::temp_dir().join(format!("keycast-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&shared).expect("shared dir");
        // Every instance must open every key: one master key for all.
        keycast_kms::LocalKeyManager::open_or_create(shared.join("master.key"))
            .expect("master key");
        let mut cluster = Self {
            nodes: Vec::new(),
            relay,
            db: Some(db),
            redis_url: redis_url.to_owned(),
            prefix: format!("keycast-test-{}", uuid::Uuid::new_v4().simple()),
            shared,
            extra: extra.to_vec(),
        };
        for i in 0..n {
            let node = cluster.launch(i).await;
            cluster.nodes.push(Some(node));
        }
        cluster.wait_members(n).await;
        Some(cluster)
    }

    /// The settings of instance `i`.
    fn vars(&self, i: usize) -> Vec<(&'static str, String)> {
        let db = self.db.as_ref().expect("database");
        let mut vars = vec![
            ("KEYCAST_DATABASE_URL", db.url.clone()),
            ("KEYCAST_REDIS_URL", self.redis_url.clone()),
            ("KEYCAST_CLUSTER_PREFIX", self.prefix.clone()),
            ("KEYCAST_CLUSTER_TTL_MS", TTL.as_millis().to_string()),
            ("KEYCAST_NODE_ID", format!("node{i}")),
            ("KEYCAST_RELAYS", self.relay.url.to_string()),
            (
                "KEYCAST_MASTER_KEY_FILE",
                self.shared.join("master.key").display().to_string(),
            ),
            ("RUST_LOG", "info".to_owned()),
        ];
        vars.extend(self.extra.iter().cloned());
        vars
    }

    /// Starts instance `i` (again) and waits until it is ready.
    pub async fn launch(&self, i: usize) -> Served {
        Served::launch(Env::new(), &[], &self.vars(i)).await
    }

    pub fn node(&self, i: usize) -> &Served {
        self.nodes[i].as_ref().expect("instance running")
    }

    pub fn relay(&self) -> RelayUrl {
        self.relay.url.clone()
    }

    /// Waits until every running instance sees `n` members and is registered.
    pub async fn wait_members(&self, n: usize) {
        // One deadline for all of them.
        let deadline = Instant::now() + Duration::from_secs(30);
        let what = format!("every instance registered in a ring of {n} members");
        for node in self.nodes.iter().flatten() {
            let left = deadline.saturating_duration_since(Instant::now());
            keycast_test_support::eventually(left, &what, || async {
                let (_, ready) = node.json(Method::GET, "/healthz/ready", None, None).await;
                ready["cluster"]["members"] == json!(n)
                    && ready["cluster"]["registered"] == json!(true)
            })
            .await;
        }
    }

    /// An account with a key on instance 0 and `count` authorizations (full access).
    pub async fn authorizations(&self, count: usize) -> (Account, Vec<Made>) {
        let node = self.node(0);
        let account = node.account("cluster@example.com").await;
        let mut made = Vec::with_capacity(count);
        for i in 0..count {
            let (status, a) = node
                .json(
                    Method::POST,
                    "/api/authorizations",
                    Some(&account.session),
                    Some(json!({"key_id": account.key_id, "label": format!("app {i}")})),
                )
                .await;
            assert_eq!(status, 201, "{a}");
            made.push(made_from(&a));
        }
        (account, made)
    }

    /// Waits until the running instances listen only for their shares of `count`
    /// authorizations: each key by its owner and its standby, so `2 × count` over all,
    /// once the pins of the instance that made them ran out (10 s) and it let go (5 s).
    pub async fn wait_shares(&self, count: usize) {
        let what = format!("the instances listening for 2 × {count} keys");
        keycast_test_support::eventually(Duration::from_secs(40), &what, || async {
            let mut listened = 0;
            for node in self.nodes.iter().flatten() {
                listened += node.metric("keycast_nip46_subscribed_authorizations").await;
            }
            listened == 2 * count as u64
        })
        .await;
    }

    /// Stops every instance still running (SIGTERM) and drops the database.
    pub async fn stop(mut self) -> Vec<String> {
        let logs = self.nodes.iter_mut().flatten().map(|n| n.stop()).collect();
        if let Some(db) = self.db.take() {
            db.drop_db().await;
        }
        let _ = std::fs::remove_dir_all(&self.shared);
        self.relay.shutdown();
        logs
    }
}

/// The ids and credentials of an authorization as `POST /api/authorizations` answered.
pub fn made_from(a: &Value) -> Made {
    let uri = a["bunker_uri"].as_str().expect("bunker uri");
    let parsed = keycast_nip46::BunkerUri::parse(uri).expect("bunker uri parses");
    Made {
        id: a["id"].as_str().expect("id").to_owned(),
        bunker: parsed.signer,
        secret: parsed.secret.expect("connect secret"),
        token: a["token"].as_str().expect("token").to_owned(),
    }
}
