//! The web UI's team pages (`/ui/teams`) of the real server binary over HTTP: who sees
//! what and who may post which form (a non-member gets 404 pages, a member 403 on every
//! admin form), each admin form doing what the teams JSON API says it did, and CSRF, bad
//! input and the last-admin rule refused with a 4xx page that changed nothing (checked
//! through the JSON API). Then an admin and a member in a real headless Chromium (needs
//! Chromium and the npm packages of `tests/browser`, see `common::browser`).

use crate::common;

use common::browser::{self, browser, screenshot_dir};
use common::pages::{code, csrf, get, html, login};
use common::server::{Account, Served, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `list` (a JSON array) in a fixed order. The store orders members and authorizations by
/// a time in seconds and then a random id, so two made in the same second come in either
/// order; comparisons must not depend on it.
fn sorted(list: Value) -> Value {
    let mut items = list.as_array().expect("a list").clone();
    items.sort_by_key(|v| v.to_string());
    Value::Array(items)
}

/// A team's state as the JSON API shows it to an admin, each list [`sorted`]: members
/// (e-mail, role), key ids, authorizations (id, revoked) and the number of policies; and
/// the admin's teams.
async fn snapshot(served: &Served, admin: &Account, team: &str) -> Value {
    let read = |path: String| async move {
        let (status, body) = served
            .json(Method::GET, &path, Some(&admin.session), None)
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let detail = read(format!("/api/teams/{team}")).await;
    let members: Vec<Value> = detail["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| json!([m["email"], m["role"]]))
        .collect();
    let members = sorted(members.into());
    let keys: Vec<Value> = read(format!("/api/teams/{team}/keys")).await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    let keys = sorted(keys.into());
    let authorizations: Vec<Value> = read(format!("/api/teams/{team}/authorizations")).await
        ["authorizations"]
        .as_array()
        .expect("authorizations")
        .iter()
        .map(|a| json!([a["id"], !a["revoked_at"].is_null()]))
        .collect();
    let authorizations = sorted(authorizations.into());
    let policies = read(format!("/api/teams/{team}/policies")).await["policies"]
        .as_array()
        .expect("policies")
        .len();
    let teams = read("/api/teams".to_owned()).await["teams"].clone();
    json!({"members": members, "keys": keys, "authorizations": authorizations,
           "policies": policies, "teams": teams})
}

/// Form fields besides the CSRF token.
type Fields = Vec<(&'static str, String)>;

/// A JSON call as `who`; asserts the status, answers the body.
async fn api(
    served: &Served,
    who: &Account,
    method: Method,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Value {
    let (status, answer) = served
        .json(method.clone(), path, Some(&who.session), body)
        .await;
    assert_eq!(status, want, "{method} {path}: {answer}");
    answer
}

async fn user_id(served: &Served, who: &Account) -> String {
    let me = api(served, who, Method::GET, "/api/me", None, 200).await;
    me["id"].as_str().expect("id").to_owned()
}

/// A team made over the JSON API: ann admin, bob member, cat outside; one key, an
/// authorization on it for ann and one for bob.
struct Setup {
    served: Served,
    ann: Account,
    bob: Account,
    cat: Account,
    team: String,
    key: String,
    anns: String,
    bobs: String,
}

impl Setup {
    async fn new() -> Self {
        let served = Served::start().await;
        let ann = served.account("ann@example.org").await;
        let bob = served.account("bob@example.org").await;
        let cat = served.account("cat@example.org").await;
        let team = api(
            &served,
            &ann,
            Method::POST,
            "/api/teams",
            Some(json!({"name": "ops"})),
            201,
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let t = |rest: &str| format!("/api/teams/{team}{rest}");
        let bob_member = json!({"email": bob.email, "role": "member"});
        api(
            &served,
            &ann,
            Method::PUT,
            &t("/members"),
            Some(bob_member),
            200,
        )
        .await;
        let key = api(
            &served,
            &ann,
            Method::POST,
            &t("/keys"),
            Some(json!({"name": "shared"})),
            201,
        )
        .await["id"]
            .as_str()
            .expect("key")
            .to_owned();
        let mut ids = Vec::new();
        for (label, member) in [("Ann's app", None), ("Bob's app", Some(&bob.email))] {
            let grant = json!({"key_id": key, "label": label, "member": member});
            let made = api(
                &served,
                &ann,
                Method::POST,
                &t("/authorizations"),
                Some(grant),
                201,
            )
            .await;
            ids.push(made["id"].as_str().expect("id").to_owned());
        }
        let [anns, bobs] = <[String; 2]>::try_from(ids).expect("two");
        Self {
            served,
            ann,
            bob,
            cat,
            team,
            key,
            anns,
            bobs,
        }
    }

    /// `/ui/teams/{team}` followed by `rest`.
    fn page(&self, rest: &str) -> String {
        format!("/ui/teams/{}{rest}", self.team)
    }

    async fn snapshot(&self) -> Value {
        snapshot(&self.served, &self.ann, &self.team).await
    }

    /// Every team form with valid fields besides the CSRF token: path and fields. Posted
    /// by an admin, each would change something.
    async fn forms(&self) -> Vec<(String, Fields)> {
        let bob_id = user_id(&self.served, &self.bob).await;
        vec![
            ("/ui/teams".to_owned(), vec![("name", "more".to_owned())]),
            (
                self.page("/members"),
                vec![("email", self.cat.email.clone()), ("role", "member".into())],
            ),
            (
                self.page("/members"),
                vec![("email", self.bob.email.clone()), ("role", "admin".into())],
            ),
            (self.page(&format!("/members/{bob_id}/remove")), Vec::new()),
            (self.page("/keys"), vec![("name", "more".into())]),
            (
                self.page("/connect"),
                vec![
                    ("key_id", self.key.clone()),
                    ("label", "Sneaky".into()),
                    ("member", self.bob.email.clone()),
                    ("preset", "full".into()),
                ],
            ),
            (
                self.page(&format!("/authorizations/{}/revoke", self.bobs)),
                Vec::new(),
            ),
            (self.page("/leave"), Vec::new()),
        ]
    }
}

/// Posts `fields` (and `csrf`, when given) to `path` with `cookie`: status, page, location.
async fn post(
    served: &Served,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    fields: &[(&str, String)],
) -> (StatusCode, String, Option<String>) {
    let mut all: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
    all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    html(served, Method::POST, path, Some(cookie), Some(&all)).await
}

const ADMIN_FORMS: [&str; 5] = [
    "id=\"add-member\"",
    "id=\"add-key\"",
    "id=\"new-connection\"",
    "class=\"change-role\"",
    "class=\"remove-member\"",
];

#[tokio::test]
async fn team_pages_without_a_session_redirect_to_the_login_form() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let mut requests = vec![
        (Method::GET, "/ui/teams".to_owned(), Vec::new()),
        (Method::GET, s.page(""), Vec::new()),
    ];
    for (path, fields) in s.forms().await {
        requests.push((Method::POST, path, fields));
    }
    for cookie in [None, Some("keycast_session=not-a-session")] {
        for (method, path, fields) in &requests {
            let mut all: Vec<(&str, &str)> = vec![("csrf", "00")];
            all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
            let body = (*method == Method::POST).then_some(&all[..]);
            let (status, _, location) = html(&s.served, method.clone(), path, cookie, body).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{method} {path}");
            assert_eq!(location.as_deref(), Some("/ui/login"), "{method} {path}");
        }
    }
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test]
async fn a_non_member_gets_404_pages_and_changes_nothing() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let cookie = login(&s.served, &s.cat.email).await;
    let list = get(&s.served, "/ui/teams", &cookie, 200).await;
    assert!(list.contains("You are not in any team yet."), "{list}");
    assert!(!list.contains("ops"), "{list}");
    let page = get(&s.served, &s.page(""), &cookie, 404).await;
    assert!(page.contains("There is no such team of yours."), "{page}");
    assert!(!page.contains("shared"), "{page}");
    for other in [
        "/ui/teams/not-a-uuid".to_owned(),
        format!("/ui/teams/{}", uuid::Uuid::new_v4()),
    ] {
        get(&s.served, &other, &cookie, 404).await;
    }
    let token = csrf(&list);
    for (path, fields) in s.forms().await {
        if path == "/ui/teams" {
            continue; // anyone may create a team
        }
        let (status, page, _) = post(&s.served, &path, &cookie, Some(&token), &fields).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {page}");
        assert!(page.contains("Nothing was changed."), "{page}");
    }
    assert_eq!(s.snapshot().await, before);
    let cats = api(&s.served, &s.cat, Method::GET, "/api/teams", None, 200).await;
    assert_eq!(cats["teams"], json!([]));
}

#[tokio::test]
async fn a_member_sees_its_own_and_gets_403_on_every_admin_form() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let cookie = login(&s.served, &s.bob.email).await;

    let list = get(&s.served, "/ui/teams", &cookie, 200).await;
    assert!(
        list.contains(&format!("href=\"/ui/teams/{}\">ops</a>", s.team)),
        "{list}"
    );
    assert!(list.contains("<td>member</td>"), "{list}");
    let page = get(&s.served, &s.page(""), &cookie, 200).await;
    assert!(page.contains("You are a member of this team."), "{page}");
    let key = api(
        &s.served,
        &s.bob,
        Method::GET,
        &format!("/api/teams/{}/keys", s.team),
        None,
        200,
    )
    .await;
    let npub = key["keys"][0]["npub"].as_str().expect("npub");
    assert!(page.contains(&format!("<code>{npub}</code>")), "{page}");
    assert!(page.contains("Bob&#39;s app"), "its own: {page}");
    assert!(!page.contains("Ann&#39;s app"), "not the admin's: {page}");
    for form in ADMIN_FORMS {
        assert!(!page.contains(form), "{form}: {page}");
    }
    assert!(page.contains("id=\"leave\""), "{page}");

    // Every admin form posted anyway: 403 (revoking the admin's app: 404, as in the API).
    let token = csrf(&page);
    let ann_id = user_id(&s.served, &s.ann).await;
    let admin_forms: Vec<(String, Fields, StatusCode)> = vec![
        (
            s.page("/members"),
            vec![("email", s.cat.email.clone()), ("role", "member".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            s.page("/members"),
            vec![("email", s.bob.email.clone()), ("role", "admin".into())],
            StatusCode::FORBIDDEN,
        ),
        // Even with fields the UI would refuse: the role is checked first.
        (
            s.page("/members"),
            vec![("email", String::new())],
            StatusCode::FORBIDDEN,
        ),
        (
            s.page(&format!("/members/{ann_id}/remove")),
            Vec::new(),
            StatusCode::FORBIDDEN,
        ),
        (
            s.page("/keys"),
            vec![("name", "more".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            s.page("/connect"),
            vec![
                ("key_id", s.key.clone()),
                ("label", "Mine".into()),
                ("preset", "full".into()),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            s.page("/connect"),
            vec![("key_id", s.key.clone()), ("preset", "kinds".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            s.page(&format!("/authorizations/{}/revoke", s.anns)),
            Vec::new(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, fields, want) in &admin_forms {
        let (status, page, _) = post(&s.served, path, &cookie, Some(&token), fields).await;
        assert_eq!(status, *want, "{path} {fields:?}: {page}");
        assert!(page.contains("Nothing was changed."), "{page}");
        if *want == StatusCode::FORBIDDEN {
            assert!(page.contains("Only team admins may"), "{page}");
        }
        assert!(!page.contains("bunker://"), "{page}");
    }
    assert_eq!(s.snapshot().await, before, "nothing changed");

    // What the API lets a member do, it may do here: revoke its own, then leave.
    let path = s.page(&format!("/authorizations/{}/revoke", s.bobs));
    let (status, _, location) = post(&s.served, &path, &cookie, Some(&token), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(s.page("")));
    let after = s.snapshot().await;
    assert_eq!(
        after["authorizations"],
        sorted(json!([[s.anns, false], [s.bobs, true]])),
        "only bob's was revoked"
    );
    let page = get(&s.served, &s.page(""), &cookie, 200).await;
    assert!(page.contains("Revoked "), "{page}");
    let (status, _, location) =
        post(&s.served, &s.page("/leave"), &cookie, Some(&token), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/teams"));
    get(&s.served, &s.page(""), &cookie, 404).await;
    let members = &s.snapshot().await["members"];
    assert_eq!(members, &json!([["ann@example.org", "admin"]]), "bob left");
}

#[tokio::test]
async fn an_admin_runs_a_team_from_its_pages() {
    let mut served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let bob = served.account("<bob>@example.org").await;
    let dan = served.account("dan@example.org").await;
    let cookie = login(&served, &ann.email).await;

    // Create the team.
    let list = get(&served, "/ui/teams", &cookie, 200).await;
    assert!(list.contains("<a href=\"/ui/teams\" aria-current=\"page\">Teams</a>"));
    let token = csrf(&list);
    let name = ("name", "<Ops & co>".to_owned());
    let (status, _, location) = post(&served, "/ui/teams", &cookie, Some(&token), &[name]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.expect("location");
    let team = location
        .strip_prefix("/ui/teams/")
        .expect("the team page")
        .to_owned();
    let teams = api(&served, &ann, Method::GET, "/api/teams", None, 200).await;
    assert_eq!(teams["teams"][0]["id"], team.as_str(), "{teams}");
    assert_eq!(teams["teams"][0]["name"], "<Ops & co>");
    assert_eq!(teams["teams"][0]["role"], "admin");
    let page = get(&served, &location, &cookie, 200).await;
    assert!(page.contains("Team &lt;Ops &amp; co&gt;"), "{page}");
    assert!(!page.contains("<Ops"), "escaped: {page}");
    assert!(page.contains("id=\"no-team-keys\""), "{page}");
    let list = get(&served, "/ui/teams", &cookie, 200).await;
    assert!(list.contains("&lt;Ops &amp; co&gt;</a>"), "{list}");

    let path = |rest: &str| format!("/ui/teams/{team}{rest}");
    let back = Some(path(""));
    let form = |p: String, fields: Fields| {
        let (served, cookie, token) = (&served, &cookie, &token);
        async move { post(served, &p, cookie, Some(token), &fields).await }
    };

    // Add bob as a member, make him admin, and member again.
    for role in ["member", "admin", "member"] {
        let fields = vec![("email", bob.email.clone()), ("role", role.into())];
        let (status, page, location) = form(path("/members"), fields).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(location, back);
        let now = snapshot(&served, &ann, &team).await;
        assert_eq!(
            now["members"],
            sorted(json!([
                ["ann@example.org", "admin"],
                ["<bob>@example.org", role]
            ]))
        );
    }
    let page = get(&served, &path(""), &cookie, 200).await;
    assert!(
        page.contains("<td>&lt;bob&gt;@example.org</td><td>member</td>"),
        "{page}"
    );
    assert!(!page.contains("<bob>"), "{page}");

    // Add a generated key: listed with its npub.
    let (status, _, location) = form(path("/keys"), vec![("name", "shared".into())]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, back);
    let keys = api(
        &served,
        &ann,
        Method::GET,
        &format!("/api/teams/{team}/keys"),
        None,
        200,
    )
    .await;
    let keys = keys["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "shared");
    let key_id = keys[0]["id"].as_str().expect("id").to_owned();
    let page = get(&served, &path(""), &cookie, 200).await;
    let npub = keys[0]["npub"].as_str().expect("npub");
    assert!(page.contains(&format!("<code>{npub}</code>")), "{page}");
    assert!(
        page.contains(&format!("<option value=\"{key_id}\">")),
        "{page}"
    );

    // A connection for bob that signs kind 1 only: the URI, QR code and token, once.
    let fields = vec![
        ("key_id", key_id.clone()),
        ("label", "Bob's notes".into()),
        ("member", bob.email.clone()),
        ("preset", "kinds".into()),
        ("kinds", "1".into()),
    ];
    let (status, page, _) = form(path("/connect"), fields).await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    let (uri, rpc) = (code(&page, "bunker-uri"), code(&page, "rpc-token"));
    assert!(page.contains("<svg role=\"img\""), "a QR code: {page}");
    assert!(page.contains("It was made for <strong>&lt;bob&gt;@example.org</strong>"));
    assert!(!page.contains("Full access"), "{page}");
    assert!(page.contains(&format!(
        "<a href=\"/ui/teams/{team}\">Back to the team</a>"
    )));
    assert_eq!(served.sign(&rpc, 1).await, StatusCode::OK);
    assert_eq!(served.sign(&rpc, 7).await, StatusCode::FORBIDDEN);
    let bob_id = user_id(&served, &bob).await;
    let all = api(
        &served,
        &ann,
        Method::GET,
        &format!("/api/teams/{team}/authorizations"),
        None,
        200,
    )
    .await;
    let all = all["authorizations"].as_array().expect("list").clone();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["user_id"], bob_id.as_str());
    assert_eq!(all[0]["label"], "Bob's notes");
    let bunker = all[0]["bunker_pubkey"].as_str().expect("bunker");
    assert!(uri.starts_with(&format!("bunker://{bunker}?")), "{uri}");
    let bobs = all[0]["id"].as_str().expect("id").to_owned();

    // One for ann herself, with full access.
    let fields = vec![
        ("key_id", key_id.clone()),
        ("label", "Mine".into()),
        ("member", String::new()),
        ("preset", "full".into()),
    ];
    let (status, page, _) = form(path("/connect"), fields).await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    assert!(page.contains("Full access"), "{page}");
    assert!(!page.contains("id=\"for-whom\""), "{page}");
    assert_eq!(served.sign(&code(&page, "rpc-token"), 30023).await, 200);

    // The team page lists both, for whom, with activity; the credentials never.
    let page = get(&served, &path(""), &cookie, 200).await;
    assert!(page.contains("<td>Bob&#39;s notes</td>"), "{page}");
    assert!(
        page.contains("<td>&lt;bob&gt;@example.org</td><td>"),
        "{page}"
    );
    assert!(page.contains("<td>you</td>"), "{page}");
    assert!(!page.contains(&rpc) && !page.contains("secret="), "{page}");

    // Revoke bob's: refused at once.
    let (status, _, location) = form(path(&format!("/authorizations/{bobs}/revoke")), vec![]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, back);
    assert_eq!(served.sign(&rpc, 1).await, StatusCode::UNAUTHORIZED);
    let now = snapshot(&served, &ann, &team).await;
    let revoked: Vec<&Value> = now["authorizations"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a[1] == true)
        .collect();
    assert_eq!(revoked, [&json!([bobs, true])], "only bob's: {now}");

    // Remove bob: gone, and the team page is a 404 for him.
    let (status, _, location) = form(path(&format!("/members/{bob_id}/remove")), vec![]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, back);
    let now = snapshot(&served, &ann, &team).await;
    assert_eq!(now["members"], json!([["ann@example.org", "admin"]]));
    let bobs_cookie = login(&served, &bob.email).await;
    get(&served, &path(""), &bobs_cookie, 404).await;

    // Dan joins, and leaves with his own button.
    let fields = vec![("email", dan.email.clone()), ("role", "member".into())];
    assert_eq!(
        form(path("/members"), fields).await.0,
        StatusCode::SEE_OTHER
    );
    let dans_cookie = login(&served, &dan.email).await;
    let dans_page = get(&served, &path(""), &dans_cookie, 200).await;
    let dans_token = csrf(&dans_page);
    let (status, _, location) = post(
        &served,
        &path("/leave"),
        &dans_cookie,
        Some(&dans_token),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/teams"));
    let dans = api(&served, &dan, Method::GET, "/api/teams", None, 200).await;
    assert_eq!(dans["teams"], json!([]));

    // The logs say what happened, and hold no credential.
    let logs = served.stop();
    assert!(
        logs.contains("team connection created in the web UI"),
        "{logs}"
    );
    let secret = uri.split("secret=").nth(1).expect("secret");
    for (what, value) in [
        ("rpc token", rpc.as_str()),
        ("connect secret", secret),
        ("csrf token", token.as_str()),
    ] {
        assert!(!logs.contains(value), "the {what} was logged");
    }
}

#[tokio::test]
async fn every_team_form_needs_the_sessions_csrf_token() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let cookie = login(&s.served, &s.ann.email).await;
    let other = csrf(
        &get(
            &s.served,
            "/ui/teams",
            &login(&s.served, &s.ann.email).await,
            200,
        )
        .await,
    );
    for presented in [None, Some(""), Some("00"), Some(other.as_str())] {
        for (path, fields) in s.forms().await {
            let (status, page, _) = post(&s.served, &path, &cookie, presented, &fields).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {presented:?}");
            assert!(page.contains("CSRF"), "{page}");
        }
    }
    assert_eq!(s.snapshot().await, before, "nothing changed");
}

#[tokio::test]
async fn bad_input_to_the_team_forms_gets_a_4xx_page_and_changes_nothing() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let cookie = login(&s.served, &s.ann.email).await;
    let token = csrf(&get(&s.served, &s.page(""), &cookie, 200).await);
    let long = "x".repeat(101);
    let owned = |fields: &[(&'static str, &str)]| -> Fields {
        fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    let connect = |fields: &[(&'static str, &str)]| {
        let mut all = owned(&[("key_id", &s.key), ("label", "A"), ("preset", "full")]);
        for (k, v) in fields {
            all.retain(|(name, _)| name != k);
            if !v.is_empty() || *k == "label" {
                all.push((*k, (*v).to_owned()));
            }
        }
        all
    };
    let (teams, members, keys, grants) = (
        "/ui/teams".to_owned(),
        s.page("/members"),
        s.page("/keys"),
        s.page("/connect"),
    );
    // (path, fields besides csrf, status, a phrase the page must show)
    let cases: Vec<(&String, Fields, u16, &str)> = vec![
        (&teams, vec![], 400, "Enter a name for the team."),
        (
            &teams,
            owned(&[("name", "  ")]),
            400,
            "Enter a name for the team.",
        ),
        (&teams, owned(&[("name", &long)]), 400, "Invalid label"),
        (&teams, owned(&[("name", "a\u{7}b")]), 400, "Invalid label"),
        (
            &teams,
            owned(&[("name", "ops")]),
            409,
            "A team with this name exists.",
        ),
        (
            &members,
            owned(&[("role", "member")]),
            400,
            "Enter the e-mail address",
        ),
        (
            &members,
            owned(&[("email", "not an address"), ("role", "member")]),
            400,
            "Invalid email",
        ),
        (
            &members,
            owned(&[("email", "nobody@example.org"), ("role", "member")]),
            404,
            "No account with this e-mail here.",
        ),
        (
            &members,
            owned(&[("email", &s.cat.email), ("role", "owner")]),
            400,
            "Invalid team role",
        ),
        (
            &members,
            owned(&[("email", &s.cat.email)]),
            400,
            "Choose a role",
        ),
        (&keys, vec![], 400, "Enter a name for the key."),
        (
            &keys,
            owned(&[("name", " ")]),
            400,
            "Enter a name for the key.",
        ),
        (&keys, owned(&[("name", &long)]), 400, "Invalid label"),
        (
            &grants,
            connect(&[("key_id", "")]),
            400,
            "Choose one of the team",
        ),
        (
            &grants,
            connect(&[("key_id", &s.ann.key_id)]),
            404,
            "No such key of this team.",
        ),
        (&grants, connect(&[("label", " ")]), 400, "Enter a label"),
        (&grants, connect(&[("label", &long)]), 400, "Invalid label"),
        (
            &grants,
            connect(&[("preset", "admin")]),
            400,
            "Choose what the app may do",
        ),
        (
            &grants,
            connect(&[("preset", "kinds"), ("kinds", "1,<b>")]),
            400,
            "&lt;b&gt;\u{201d} is not an event kind",
        ),
        (
            &grants,
            connect(&[("preset", "kinds"), ("kinds", " , ")]),
            400,
            "at least one event kind",
        ),
        (
            &grants,
            connect(&[("member", "not an address")]),
            400,
            "Invalid email",
        ),
        (
            &grants,
            connect(&[("member", &s.cat.email)]),
            404,
            "No such member of this team.",
        ),
        (
            &grants,
            connect(&[("member", "nobody@example.org")]),
            404,
            "No such member of this team.",
        ),
        (
            &grants,
            [connect(&[]), owned(&[("key_id", &s.key)])].concat(),
            400,
            "malformed",
        ),
    ];
    let remove_nobody = s.page(&format!("/members/{}/remove", uuid::Uuid::new_v4()));
    let remove_nonsense = s.page("/members/nope/remove");
    let revoke_nothing = s.page(&format!("/authorizations/{}/revoke", uuid::Uuid::new_v4()));
    let mut cases = cases;
    for path in [&remove_nobody, &remove_nonsense, &revoke_nothing] {
        cases.push((path, vec![], 404, "Nothing was changed."));
    }
    for (path, fields, want, phrase) in &cases {
        let (status, page, _) = post(&s.served, path, &cookie, Some(&token), fields).await;
        assert_eq!(status, *want, "{path} {fields:?}: {page}");
        assert!(
            page.contains(phrase),
            "{path} {fields:?} should say {phrase:?}: {page}"
        );
        assert!(!page.contains("bunker://"), "{page}");
    }
    assert_eq!(s.snapshot().await, before, "nothing changed");
}

#[tokio::test]
async fn the_last_admin_is_told_it_cannot_step_down_or_leave() {
    let s = Setup::new().await;
    let before = s.snapshot().await;
    let cookie = login(&s.served, &s.ann.email).await;
    let page = get(&s.served, &s.page(""), &cookie, 200).await;
    let token = csrf(&page);
    let ann_id = user_id(&s.served, &s.ann).await;
    let attempts: Vec<(String, Fields)> = vec![
        (
            s.page("/members"),
            vec![("email", s.ann.email.clone()), ("role", "member".into())],
        ),
        (s.page("/leave"), Vec::new()),
        (s.page(&format!("/members/{ann_id}/remove")), Vec::new()),
    ];
    for (path, fields) in &attempts {
        let (status, page, _) = post(&s.served, path, &cookie, Some(&token), fields).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {page}");
        assert!(
            page.contains(
                "A team needs at least one admin; make another member admin first. \
                 Nothing was changed."
            ),
            "{page}"
        );
    }
    assert_eq!(s.snapshot().await, before, "nothing changed");

    // With another admin, she may leave.
    let fields = vec![("email", s.bob.email.clone()), ("role", "admin".into())];
    let (status, _, _) = post(
        &s.served,
        &s.page("/members"),
        &cookie,
        Some(&token),
        &fields,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, location) =
        post(&s.served, &s.page("/leave"), &cookie, Some(&token), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/teams"));
    get(&s.served, &s.page(""), &cookie, 404).await;
    let team = format!("/api/teams/{}", s.team);
    let detail = api(&s.served, &s.bob, Method::GET, &team, None, 200).await;
    assert_eq!(
        detail["members"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_and_a_member_use_the_team_pages_in_chromium() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let bob = served.account("bob@example.org").await;
    let shots = screenshot_dir("teams");
    let args = vec![
        served.env.url(""),
        ann.email.clone(),
        bob.email.clone(),
        PASSWORD.to_owned(),
        shots.display().to_string(),
    ];
    let steps = [
        "team created",
        "member added",
        "team key added",
        "QR code",
        "member sees the team",
        "member sees the key",
        "member sees its own connection only",
        "member sees no admin form",
        "member revoked its connection",
    ];
    let result = browser::walk(dir, chromium, "web_ui_teams.mjs", args, &steps).await;
    let shots: Vec<&str> = result["screenshots"]
        .as_array()
        .expect("screenshots")
        .iter()
        .map(|s| s.as_str().expect("path"))
        .collect();
    for name in ["team-as-admin.png", "team-as-member.png"] {
        assert!(shots.iter().any(|s| s.ends_with(name)), "{name}: {shots:?}");
    }

    // The QR code in the screenshot is the URI shown, of the connection made for bob.
    let uri = result["uri"].as_str().expect("uri");
    assert!(uri.starts_with("bunker://"), "{uri}");
    assert_eq!(result["qr"], uri, "the QR code decodes to the URI");
    let teams = api(&served, &ann, Method::GET, "/api/teams", None, 200).await;
    let team = teams["teams"][0]["id"].as_str().expect("team").to_owned();
    assert_eq!(teams["teams"][0]["name"], result["team"]);
    let all = api(
        &served,
        &ann,
        Method::GET,
        &format!("/api/teams/{team}/authorizations"),
        None,
        200,
    )
    .await;
    let all = all["authorizations"].as_array().expect("list").clone();
    assert_eq!(all.len(), 2, "one for ann, one for bob: {all:?}");
    let bob_id = user_id(&served, &bob).await;
    let bobs = all
        .iter()
        .find(|a| a["user_id"] == bob_id.as_str())
        .expect("bob's");
    assert_eq!(bobs["label"], result["label"]);
    let bunker = bobs["bunker_pubkey"].as_str().expect("bunker pubkey");
    assert!(uri.starts_with(&format!("bunker://{bunker}?")), "{uri}");
    // It signed while it was active, and bob revoked it in his browser.
    assert_eq!(bobs["signatures"], 1, "{bobs}");
    assert!(!bobs["revoked_at"].is_null(), "{bobs}");
    let token = result["token"].as_str().expect("token");
    assert_eq!(served.sign(token, 1).await, StatusCode::UNAUTHORIZED);
    let anns = all
        .iter()
        .find(|a| a["user_id"] != bob_id.as_str())
        .expect("ann's");
    assert!(anns["revoked_at"].is_null(), "ann's is untouched: {anns}");
}
