//! Teams end to end, in-process on SQLite and (with `KEYCAST_TEST_POSTGRES_URL`) Postgres:
//! every team endpoint called by a non-member, a member and an admin; shared keys and
//! policies used by apps over HTTP RPC; removal revoking a member's access; the last-admin
//! rule; and bad input answered with a clear error that changes nothing.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, sign, Api};
use serde_json::{json, Value};

struct Team<'a> {
    api: &'a Api,
    id: String,
}

impl Team<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/api/teams/{}{rest}", self.id)
    }

    async fn call(
        &self,
        who: &str,
        method: &str,
        rest: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api
            .call(method, &self.path(rest), Some(who), body)
            .await
    }

    /// `rest` answered `want` with a JSON body, or fails naming `ctx`.
    async fn expect(
        &self,
        ctx: &str,
        who: &str,
        method: &str,
        rest: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Value {
        let (status, answer) = self.call(who, method, rest, body).await;
        assert_eq!(status, want, "{ctx}: {method} {rest}: {answer}");
        if !want.is_success() {
            assert!(is_error(&answer), "{ctx}: {answer}");
        }
        answer
    }

    async fn authorization_count(&self, admin: &str) -> usize {
        let (_, list) = self.call(admin, "GET", "/authorizations", None).await;
        list["authorizations"].as_array().expect("list").len()
    }
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

async fn user_id(api: &Api, session: &str) -> String {
    let (_, me) = api.call("GET", "/api/me", Some(session), None).await;
    id_of(&me)
}

async fn teams_end_to_end(database_url: Option<&str>) {
    let settings: Vec<(&str, &str)> = database_url
        .map(|u| vec![("KEYCAST_DATABASE_URL", u)])
        .unwrap_or_default();
    let api = Api::new(&settings).await;
    let ann = api.account("ann@example.org").await; // admin
    let bob = api.account("bob@example.org").await; // member
    let cat = api.account("cat@example.org").await; // not a member
    let dan = api.account("dan@example.org").await; // joins and leaves
    let (bob_id, dan_id) = (user_id(&api, &bob).await, user_id(&api, &dan).await);

    // Creating: any account; its creator is the first admin; names are unique.
    let (status, created) = api
        .call(
            "POST",
            "/api/teams",
            Some(&ann),
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["role"], "admin");
    let team = Team {
        api: &api,
        id: id_of(&created),
    };
    for (body, want) in [
        (json!({"name": "ops"}), StatusCode::CONFLICT),
        (json!({"name": ""}), StatusCode::BAD_REQUEST),
        (json!({"name": "a\u{7}b"}), StatusCode::BAD_REQUEST),
        (json!({"name": "x".repeat(101)}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"name": "x", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!([1]), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = api
            .call("POST", "/api/teams", Some(&cat), Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    let (_, cats) = api.call("GET", "/api/teams", Some(&cat), None).await;
    assert_eq!(cats["teams"], json!([]), "failed creations left nothing");
    let (status, _) = api.call("GET", "/api/teams", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Set-up by the admin: bob as member, a shared key, a team policy (kind 1 only).
    let bob_as_member = json!({"email": "bob@example.org", "role": "member"});
    team.expect(
        "setup",
        &ann,
        "PUT",
        "/members",
        Some(bob_as_member),
        StatusCode::OK,
    )
    .await;
    let key = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/keys",
            Some(json!({"name": "shared"})),
            StatusCode::CREATED,
        )
        .await;
    let key_id = id_of(&key);
    let doomed = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/keys",
            Some(json!({"name": "doomed"})),
            StatusCode::CREATED,
        )
        .await;
    let notes_only =
        json!({"name": "notes", "permissions": [{"type": "allowed_kinds", "kinds": [1]}]});
    let policy = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/policies",
            Some(notes_only),
            StatusCode::CREATED,
        )
        .await;
    let policy_id = id_of(&policy);
    let for_bob = json!({"key_id": key_id, "policy_id": policy_id, "member": "bob@example.org", "label": "bob's client"});
    let bobs = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/authorizations",
            Some(for_bob),
            StatusCode::CREATED,
        )
        .await;
    let bob_token = bobs["token"].as_str().expect("token").to_owned();
    assert!(bobs["bunker_uri"]
        .as_str()
        .expect("uri")
        .starts_with("bunker://"));
    let app = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/authorizations",
            Some(json!({"key_id": key_id})),
            StatusCode::CREATED,
        )
        .await;
    let app_id = id_of(&app);

    // The shared key signs under the team policy.
    assert_eq!(sign(&api, &bob_token, 1).await, StatusCode::OK);
    assert_eq!(
        sign(&api, &bob_token, 7).await,
        StatusCode::FORBIDDEN,
        "the team policy allows kind 1 only"
    );

    // Every endpoint as a non-member, a member and an admin.
    let dan_as_member = json!({"email": "dan@example.org", "role": "member"});
    let doomed_path = format!("/keys/{}", id_of(&doomed));
    let app_path = format!("/authorizations/{app_id}");
    let dan_path = format!("/members/{dan_id}");
    let grant_bob = json!({"key_id": key_id, "member": "bob@example.org"});
    let new_policy = json!({"name": "any", "permissions": [{"type": "full_access"}]});
    let spare = team
        .expect(
            "setup",
            &ann,
            "POST",
            "/policies",
            Some(new_policy.clone()),
            StatusCode::CREATED,
        )
        .await;
    let spare_path = format!("/policies/{}", id_of(&spare));
    let notes_path = format!("/policies/{policy_id}");
    let notes_and_reactions = json!({"name": "notes and reactions", "version": 1,
        "permissions": [{"type": "allowed_kinds", "kinds": [1, 7]}]});
    use StatusCode as S;
    let matrix: Vec<(&str, &str, Option<Value>, [StatusCode; 3])> = vec![
        ("GET", "", None, [S::NOT_FOUND, S::OK, S::OK]),
        (
            "PUT",
            "/members",
            Some(dan_as_member.clone()),
            [S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
        ("GET", "/keys", None, [S::NOT_FOUND, S::OK, S::OK]),
        (
            "POST",
            "/keys",
            Some(json!({"name": "more"})),
            [S::NOT_FOUND, S::FORBIDDEN, S::CREATED],
        ),
        ("GET", "/policies", None, [S::NOT_FOUND, S::OK, S::OK]),
        (
            "POST",
            "/policies",
            Some(new_policy),
            [S::NOT_FOUND, S::FORBIDDEN, S::CREATED],
        ),
        (
            "PUT",
            &notes_path,
            Some(notes_and_reactions),
            [S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
        (
            "DELETE",
            &spare_path,
            None,
            [S::NOT_FOUND, S::FORBIDDEN, S::NO_CONTENT],
        ),
        ("GET", "/authorizations", None, [S::NOT_FOUND, S::OK, S::OK]),
        (
            "POST",
            "/authorizations",
            Some(grant_bob),
            [S::NOT_FOUND, S::FORBIDDEN, S::CREATED],
        ),
        (
            "DELETE",
            &doomed_path,
            None,
            [S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
        // A member may revoke only what was made for it: the admin's app is not found.
        (
            "DELETE",
            &app_path,
            None,
            [S::NOT_FOUND, S::NOT_FOUND, S::OK],
        ),
        (
            "DELETE",
            &dan_path,
            None,
            [S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
    ];
    for (method, rest, body, wants) in &matrix {
        let before = team.authorization_count(&ann).await;
        for (who, name, want) in [
            (&cat, "non-member", wants[0]),
            (&bob, "member", wants[1]),
            (&ann, "admin", wants[2]),
        ] {
            if !want.is_success() {
                team.expect(name, who, method, rest, body.clone(), want)
                    .await;
            }
        }
        // Refusals changed nothing the admin can see.
        assert_eq!(
            team.authorization_count(&ann).await,
            before,
            "{method} {rest}"
        );
        team.expect("admin", &ann, method, rest, body.clone(), wants[2])
            .await;
    }

    // The edited team policy reached bob's running app at once; a stale version, a policy
    // in use and another account's policy are refused.
    assert_eq!(
        sign(&api, &bob_token, 7).await,
        StatusCode::OK,
        "kind 7 allowed now"
    );
    let stale = json!({"name": "x", "version": 1, "permissions": [{"type": "full_access"}]});
    team.expect("stale", &ann, "PUT", &notes_path, Some(stale), S::CONFLICT)
        .await;
    team.expect("in use", &ann, "DELETE", &notes_path, None, S::CONFLICT)
        .await;
    team.expect("gone", &ann, "DELETE", &spare_path, None, S::NOT_FOUND)
        .await;
    let bad = json!({"name": "x", "permissions": []});
    team.expect(
        "no rules",
        &ann,
        "PUT",
        &notes_path,
        Some(bad),
        S::BAD_REQUEST,
    )
    .await;
    let (_, theirs) = api
        .call(
            "POST",
            "/api/policies",
            Some(&cat),
            Some(json!({"name": "cat's", "permissions": [{"type": "full_access"}]})),
        )
        .await;
    let theirs_path = format!("/policies/{}", id_of(&theirs));
    team.expect(
        "not the team's",
        &ann,
        "DELETE",
        &theirs_path,
        None,
        S::NOT_FOUND,
    )
    .await;
    let (status, _) = api
        .call(
            "GET",
            &format!("/api/policies/{}", id_of(&theirs)),
            Some(&cat),
            None,
        )
        .await;
    assert_eq!(status, S::OK, "cat's own policy is untouched");
    let (_, listed) = team.call(&bob, "GET", "/policies", None).await;
    let notes = listed["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["id"] == policy_id.as_str())
        .cloned()
        .expect("notes policy");
    assert_eq!(
        (notes["name"].clone(), notes["version"].clone()),
        (json!("notes and reactions"), json!(2))
    );

    // What each one sees.
    let (_, cats) = api.call("GET", "/api/teams", Some(&cat), None).await;
    assert_eq!(cats["teams"], json!([]));
    let (_, bobs_teams) = api.call("GET", "/api/teams", Some(&bob), None).await;
    assert_eq!(bobs_teams["teams"][0]["role"], "member", "{bobs_teams}");
    let detail = team.expect("member", &bob, "GET", "", None, S::OK).await;
    assert_eq!(
        detail["members"].as_array().map(Vec::len),
        Some(2),
        "dan was removed: {detail}"
    );
    let mine = team
        .expect("member", &bob, "GET", "/authorizations", None, S::OK)
        .await;
    let mine = mine["authorizations"].as_array().expect("list").clone();
    assert_eq!(mine.len(), 2, "bob sees the two made for him: {mine:?}");
    assert!(mine.iter().all(|a| a["user_id"] == bob_id.as_str()));
    assert!(
        mine.iter().any(|a| a["signatures"] == 2),
        "activity is shown (kind 1, then kind 7 after the edit): {mine:?}"
    );
    let all = team
        .expect("admin", &ann, "GET", "/authorizations", None, S::OK)
        .await;
    assert_eq!(all["authorizations"].as_array().map(Vec::len), Some(3));
    let (_, personal) = api
        .call("GET", "/api/authorizations", Some(&bob), None)
        .await;
    assert_eq!(
        personal["authorizations"].as_array().map(Vec::len),
        Some(2),
        "{personal}"
    );

    // Team keys are nobody's own key: personal key calls do not reach them.
    let export = json!({"format": "nsec", "account_password": "correct horse battery", "email_code": "0".repeat(64)});
    for who in [&ann, &bob] {
        let (status, _) = api
            .call(
                "POST",
                "/api/authorizations",
                Some(who),
                Some(json!({"key_id": key_id})),
            )
            .await;
        assert_eq!(status, S::NOT_FOUND);
        let (status, _) = api
            .call(
                "POST",
                &format!("/api/keys/{key_id}/danger/export"),
                Some(who),
                Some(export.clone()),
            )
            .await;
        assert_eq!(status, S::NOT_FOUND);
        let (status, _) = api
            .call("DELETE", &format!("/api/keys/{key_id}"), Some(who), None)
            .await;
        assert_eq!(status, S::NOT_FOUND);
    }

    // Bad input: a clear error, and nothing created.
    let (_, ann_key) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    let (_, ann_policy) = api
        .call(
            "POST",
            "/api/policies",
            Some(&ann),
            Some(json!({"name": "mine", "permissions": [{"type": "full_access"}]})),
        )
        .await;
    let before = team.authorization_count(&ann).await;
    for (body, want) in [
        (json!({"key_id": id_of(&ann_key)}), S::NOT_FOUND),
        (json!({"key_id": "not-a-uuid"}), S::NOT_FOUND),
        (
            json!({"key_id": key_id, "policy_id": id_of(&ann_policy)}),
            S::NOT_FOUND,
        ),
        (
            json!({"key_id": key_id, "member": "cat@example.org"}),
            S::NOT_FOUND,
        ),
        (
            json!({"key_id": key_id, "member": "nobody@example.org"}),
            S::NOT_FOUND,
        ),
        (
            json!({"key_id": key_id, "member": "not an address"}),
            S::BAD_REQUEST,
        ),
        (
            json!({"key_id": key_id, "policy_id": policy_id, "permissions": [{"type": "full_access"}]}),
            S::BAD_REQUEST,
        ),
        (json!({"key_id": key_id, "permissions": []}), S::BAD_REQUEST),
        (
            json!({"key_id": key_id, "permissions": [{"type": "teleport"}]}),
            S::UNPROCESSABLE_ENTITY,
        ),
        (json!({"key_id": key_id, "expires_at": 1}), S::BAD_REQUEST),
        (json!({"key_id": key_id, "label": ""}), S::BAD_REQUEST),
        (
            json!({"key_id": key_id, "surprise": true}),
            S::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), S::UNPROCESSABLE_ENTITY),
    ] {
        team.expect(
            &body.to_string(),
            &ann,
            "POST",
            "/authorizations",
            Some(body.clone()),
            want,
        )
        .await;
    }
    assert_eq!(team.authorization_count(&ann).await, before);
    let (_, policies) = team.call(&ann, "GET", "/policies", None).await;
    let policies_before = policies["policies"].as_array().map(Vec::len);
    for (body, want) in [
        (
            json!({"email": "cat@example.org", "role": "owner"}),
            S::BAD_REQUEST,
        ),
        (
            json!({"email": "nobody@example.org", "role": "member"}),
            S::NOT_FOUND,
        ),
        (json!({"email": "", "role": "member"}), S::BAD_REQUEST),
        (json!({"email": "cat@example.org"}), S::UNPROCESSABLE_ENTITY),
    ] {
        team.expect(
            &body.to_string(),
            &ann,
            "PUT",
            "/members",
            Some(body.clone()),
            want,
        )
        .await;
    }
    team.expect(
        "bad policy",
        &ann,
        "POST",
        "/policies",
        Some(json!({"name": "p", "permissions": []})),
        S::BAD_REQUEST,
    )
    .await;
    let (_, policies) = team.call(&ann, "GET", "/policies", None).await;
    assert_eq!(
        policies["policies"].as_array().map(Vec::len),
        policies_before
    );
    let (_, cats) = api.call("GET", "/api/teams", Some(&cat), None).await;
    assert_eq!(cats["teams"], json!([]), "cat was never added");
    for path in [
        "/api/teams/not-a-uuid",
        &format!("/api/teams/{}", uuid::Uuid::new_v4()),
    ] {
        let (status, answer) = api.call("GET", path, Some(&ann), None).await;
        assert_eq!(status, S::NOT_FOUND, "{answer}");
    }
    team.expect(
        "bad member id",
        &ann,
        "DELETE",
        "/members/not-a-uuid",
        None,
        S::NOT_FOUND,
    )
    .await;

    // The last admin can neither step down nor leave; the refusal changes nothing.
    let ann_as_member = json!({"email": "ann@example.org", "role": "member"});
    team.expect(
        "last admin",
        &ann,
        "PUT",
        "/members",
        Some(ann_as_member),
        S::CONFLICT,
    )
    .await;
    let ann_id = user_id(&api, &ann).await;
    team.expect(
        "last admin",
        &ann,
        "DELETE",
        &format!("/members/{ann_id}"),
        None,
        S::CONFLICT,
    )
    .await;
    let detail = team.expect("admin", &ann, "GET", "", None, S::OK).await;
    assert_eq!(detail["role"], "admin");

    // A member may leave on its own.
    team.expect(
        "re-add",
        &ann,
        "PUT",
        "/members",
        Some(dan_as_member),
        S::OK,
    )
    .await;
    let left = team
        .expect(
            "leave",
            &dan,
            "DELETE",
            &format!("/members/{dan_id}"),
            None,
            S::OK,
        )
        .await;
    assert_eq!(left["revoked"], 0);
    team.expect("left", &dan, "GET", "", None, S::NOT_FOUND)
        .await;

    // Removing bob revokes what was made for him, at once: his app is refused.
    let removed = team
        .expect(
            "remove",
            &ann,
            "DELETE",
            &format!("/members/{bob_id}"),
            None,
            S::OK,
        )
        .await;
    assert_eq!(removed["revoked"], 2, "{removed}");
    assert_eq!(sign(&api, &bob_token, 1).await, S::UNAUTHORIZED);
    team.expect("removed", &bob, "GET", "/keys", None, S::NOT_FOUND)
        .await;
    let all = team
        .expect("admin", &ann, "GET", "/authorizations", None, S::OK)
        .await;
    let active = all["authorizations"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["revoked_at"].is_null())
        .count();
    assert_eq!(
        active, 0,
        "bob's two were revoked, the app was revoked in the matrix: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_on_sqlite() {
    teams_end_to_end(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_on_postgres() {
    let Some(admin) = keycast_storage::testing::postgres_url() else {
        return;
    };
    let db = keycast_storage::testing::FreshDb::create(&admin).await;
    teams_end_to_end(Some(&db.url)).await;
    db.drop_db().await;
}
