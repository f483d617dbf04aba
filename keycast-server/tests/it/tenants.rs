//! Tenants by host, in-process on SQLite and (with `KEYCAST_TEST_POSTGRES_URL`) Postgres:
//! two tenants on one deployment see and use nothing of each other, and a host no tenant
//! is served at is refused before anything is created.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, Api};
use keycast_core::{TenantHost, TenantName};
use serde_json::{json, Value};

const TENANTS: &str = r#"[{"name":"acme","hosts":["acme.test"]},
    {"name":"globex","hosts":["globex.test","keys.globex.test"]}]"#;

struct Tenants {
    api: Api,
}

impl Tenants {
    async fn call(
        &self,
        host: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api
            .call_at(Some(host), method, path, token, body)
            .await
    }

    /// Registers and logs in at `host`; the session token.
    async fn account(&self, host: &str, email: &str, password: &str) -> String {
        let creds = json!({"email": email, "password": password});
        let (status, body) = self
            .call(
                host,
                "POST",
                "/api/auth/register",
                None,
                Some(creds.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register at {host}: {body}");
        let (status, body) = self
            .call(host, "POST", "/api/auth/login", None, Some(creds))
            .await;
        assert_eq!(status, StatusCode::OK, "login at {host}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A key and an authorization on it at `host`: (key id, RPC token).
    async fn key_and_token(&self, host: &str, session: &str) -> (String, String) {
        let (status, key) = self
            .call(
                host,
                "POST",
                "/api/keys",
                Some(session),
                Some(json!({"name": "main"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key_id = key["id"].as_str().expect("key id").to_owned();
        let (status, auth) = self
            .call(
                host,
                "POST",
                "/api/authorizations",
                Some(session),
                Some(json!({"key_id": key_id, "label": "app"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{auth}");
        (key_id, auth["token"].as_str().expect("token").to_owned())
    }

    async fn sign(&self, host: &str, token: &str) -> StatusCode {
        let template = json!({"kind": 1, "content": "hi", "tags": []}).to_string();
        let body = json!({"method": "sign_event", "params": [template]});
        self.call(host, "POST", "/api/nostr", Some(token), Some(body))
            .await
            .0
    }
}

async fn two_tenants(database_url: Option<&str>) {
    let mut settings = vec![("KEYCAST_TENANTS", TENANTS)];
    if let Some(url) = database_url {
        settings.push(("KEYCAST_DATABASE_URL", url));
    }
    let t = Tenants {
        api: Api::new(&settings).await,
    };
    let store = t.api.state.services.store.clone();
    let tenants_before = store.list_tenants().await.expect("tenants");
    assert_eq!(tenants_before.len(), 3, "default, acme and globex");

    // A host no tenant is served at, a missing and a malformed one: 421, nothing created.
    let creds = json!({"email": "ann@example.org", "password": "correct horse battery"});
    for host in [
        Some("evil.test"),
        Some("acme.test.evil"),
        Some("bad host"),
        None,
    ] {
        let (status, body) = t
            .api
            .call_at(
                host,
                "POST",
                "/api/auth/register",
                None,
                Some(creds.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host:?}: {body}");
        assert_eq!(body["error"]["code"], "unknown_host", "{body}");
    }
    assert_eq!(store.list_tenants().await.expect("tenants"), tenants_before);
    let (status, _) = t
        .call("evil.test", "GET", "/healthz/ready", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "probes answer at any host");

    // The same e-mail is a different account in each tenant, unique within each.
    let ann_acme = t
        .account("acme.test", "ann@example.org", "acme password 1")
        .await;
    let ann_globex = t
        .account("globex.test", "ann@example.org", "globex password 2")
        .await;
    let (status, body) = t
        .call(
            "keys.globex.test",
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"email": "ANN@example.org", "password": "another password"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one tenant, two hosts: {body}"
    );
    let (status, _) = t
        .call(
            "globex.test",
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "ann@example.org", "password": "acme password 1"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "acme's password is not globex's"
    );

    // Sessions work only at their tenant's hosts (any case, any port).
    for (host, token, want) in [
        ("acme.test", &ann_acme, StatusCode::OK),
        ("ACME.test:8443", &ann_acme, StatusCode::OK),
        ("globex.test", &ann_acme, StatusCode::UNAUTHORIZED),
        ("keys.globex.test", &ann_globex, StatusCode::OK),
        ("acme.test", &ann_globex, StatusCode::UNAUTHORIZED),
    ] {
        let (status, body) = t.call(host, "GET", "/api/me", Some(token), None).await;
        assert_eq!(status, want, "{host}: {body}");
        if want != StatusCode::OK {
            assert!(is_error(&body), "{body}");
        }
    }

    // Keys, authorizations and tokens stay in their tenant.
    let (acme_key, acme_rpc) = t.key_and_token("acme.test", &ann_acme).await;
    let (globex_key, globex_rpc) = t.key_and_token("globex.test", &ann_globex).await;
    let (_, listed) = t
        .call("globex.test", "GET", "/api/keys", Some(&ann_globex), None)
        .await;
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert!(
        ids.contains(&globex_key.as_str()) && !ids.contains(&acme_key.as_str()),
        "{listed}"
    );
    assert_eq!(t.sign("acme.test", &acme_rpc).await, StatusCode::OK);
    assert_eq!(
        t.sign("globex.test", &acme_rpc).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.sign("keys.globex.test", &globex_rpc).await,
        StatusCode::OK
    );
    assert_eq!(
        t.sign("acme.test", &globex_rpc).await,
        StatusCode::UNAUTHORIZED
    );
    let path = format!("/api/keys/{acme_key}");
    let (status, _) = t
        .call("globex.test", "DELETE", &path, Some(&ann_acme), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "acme's session at globex");
    assert_eq!(
        t.sign("acme.test", &acme_rpc).await,
        StatusCode::OK,
        "still there"
    );

    // And in the store, each row carries its tenant.
    let acme = store
        .find_tenant(&TenantName::parse("acme").expect("name"))
        .await
        .expect("acme");
    let globex = store
        .find_tenant(&TenantName::parse("globex").expect("name"))
        .await
        .expect("globex");
    let acme_keys: Vec<String> = store
        .list_keys(acme.id, None)
        .await
        .expect("keys")
        .iter()
        .map(|k| k.id.to_string())
        .collect();
    assert!(acme_keys.contains(&acme_key) && !acme_keys.contains(&globex_key));
    let hosts = store.list_tenant_hosts().await.expect("hosts");
    assert!(hosts.contains(&(
        TenantHost::parse("keys.globex.test").expect("host"),
        globex.id
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_on_sqlite_share_nothing() {
    two_tenants(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_on_postgres_share_nothing() {
    let Some(admin) = keycast_storage::testing::postgres_url() else {
        return;
    };
    let db = keycast_storage::testing::FreshDb::create(&admin).await;
    two_tenants(Some(&db.url)).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_in_one_tenant_leaves_the_same_email_in_another_alone() {
    let t = Tenants {
        api: Api::new(&[("KEYCAST_TENANTS", TENANTS)]).await,
    };
    t.account("acme.test", "cy@example.org", "acme password 1")
        .await;
    t.account("globex.test", "cy@example.org", "globex password 2")
        .await;
    let login = |host: &'static str, password: &'static str| {
        let t = &t;
        async move {
            t.call(
                host,
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"email": "cy@example.org", "password": password})),
            )
            .await
            .0
        }
    };
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        last = login("acme.test", "wrong password!").await;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "locked at acme");
    assert_eq!(
        login("acme.test", "acme password 1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("globex.test", "globex password 2").await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tenants_by_host_every_host_is_the_default_tenant() {
    let api = Api::new(&[]).await;
    let creds = json!({"email": "bo@example.org", "password": "correct horse battery"});
    for host in [Some("anything.example"), None] {
        let (status, body) = api
            .call_at(host, "POST", "/api/auth/login", None, Some(creds.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no 421: {body}");
    }
    let token = api.account("bo@example.org").await;
    let (status, _) = api
        .call_at(Some("other.example"), "GET", "/api/me", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tenant_settings_stop_the_start_with_the_setting_named() {
    for (name, value, want) in [
        (
            "KEYCAST_TENANTS",
            "[{\"name\":\"Bad Name\"}]",
            "KEYCAST_TENANTS",
        ),
        (
            "KEYCAST_TENANTS",
            "[{\"name\":\"a\",\"hosts\":[\"a.test:80\"]}]",
            "host",
        ),
        (
            "KEYCAST_TENANTS_BY_HOST",
            "sometimes",
            "KEYCAST_TENANTS_BY_HOST",
        ),
    ] {
        let err = common::config_error(name, value);
        assert!(err.contains(want), "{err}");
    }
}

/// Registers at `host` on a running server; the status.
async fn register_at(served: &common::server::Served, host: &str, email: &str) -> StatusCode {
    served
        .http
        .post(served.env.url("/api/auth/register"))
        .header("host", host)
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .expect("request")
        .status()
}

/// Polls `register_at` until it answers `want`; how long that took.
async fn until_status(
    served: &common::server::Served,
    host: &str,
    want: StatusCode,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let status = register_at(served, host, &format!("u{n}@example.org")).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < keycast_server::tenancy::REFRESH * 3,
            "{host} still answers {status}, not {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_added_and_removed_with_the_cli_reach_a_running_server() {
    let served = common::server::Served::launch(
        common::Env::new(),
        &[],
        &[("KEYCAST_TENANTS_BY_HOST", "true".to_owned())],
    )
    .await;
    assert_eq!(
        register_at(&served, "late.test", "a@example.org").await,
        StatusCode::MISDIRECTED_REQUEST
    );
    served
        .env
        .ok(&["tenant", "add", "late", "--host", "late.test"], "");
    let took = until_status(&served, "late.test", StatusCode::CREATED).await;
    eprintln!("added host served after {took:?}");
    served.env.ok(&["tenant", "remove-host", "late.test"], "");
    let took = until_status(&served, "late.test", StatusCode::MISDIRECTED_REQUEST).await;
    eprintln!("removed host refused after {took:?}");
}
