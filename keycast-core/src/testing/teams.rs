//! Conformance checks for teams and key replacement (part of [`super::key_store::run`]).

use std::sync::Arc;

use nostr::Timestamp;

use super::fixtures::*;
use super::key_store::world;
use crate::error::Error;
use crate::model::change::Changed;
use crate::model::key::{KeyKind, StoredKey};
use crate::model::policy::Permission;
use crate::model::team::{Team, TeamRole};
use crate::traits::key_store::KeyStore;

fn team(tenant: crate::ids::TenantId) -> Team {
    Team::new(tenant, label(&format!("team {}", suffix())))
}

/// Teams: creation with its first admin, roles, the last-admin rule, tenant scoping, and
/// removal revoking the member's authorizations on team keys (and only those).
pub async fn teams(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let mut t = team(w.tenant.id);
    // The first admin joins when the team is made; an earlier time orders it first.
    t.created_at = Timestamp::from(1_700_000_000);
    store.create_team(&t, w.user.id).await.unwrap();
    assert_eq!(store.get_team(t.id).await.unwrap(), t);
    assert_eq!(
        store.team_role(t.id, w.user.id).await.unwrap(),
        Some(TeamRole::Admin)
    );
    let same_name = Team::new(w.tenant.id, t.name.clone());
    assert!(
        matches!(
            store.create_team(&same_name, w.user.id).await,
            Err(Error::AlreadyExists { .. })
        ),
        "a team name is unique in its tenant"
    );
    assert!(matches!(
        store.get_team(same_name.id).await,
        Err(Error::NotFound { .. })
    ));

    // Another tenant: its users cannot join, and its admin cannot create a team here.
    let other = world(store).await;
    assert!(matches!(
        store.create_team(&team(w.tenant.id), other.user.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_team_member(t.id, other.user.id, TeamRole::Member)
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.list_teams(other.user.id).await.unwrap().is_empty());
    // The same name in the other tenant is fine.
    let theirs = Team::new(other.tenant.id, t.name.clone());
    store.create_team(&theirs, other.user.id).await.unwrap();

    let member = user(w.tenant.id);
    store.create_user(&member).await.unwrap();
    assert_eq!(store.team_role(t.id, member.id).await.unwrap(), None);
    let m = store
        .set_team_member(t.id, member.id, TeamRole::Member)
        .await
        .unwrap();
    assert_eq!(
        (m.team_id, m.user_id, m.role),
        (t.id, member.id, TeamRole::Member)
    );
    let listed = store.list_team_members(t.id).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].user_id, w.user.id, "longest-standing first");
    let mine = store.list_teams(member.id).await.unwrap();
    assert_eq!(mine, vec![(t.clone(), TeamRole::Member)]);

    // The last admin can neither step down nor leave; with a second admin it can.
    assert!(matches!(
        store
            .set_team_member(t.id, w.user.id, TeamRole::Member)
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store
            .remove_team_member(t.id, w.user.id, Timestamp::now())
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.team_role(t.id, w.user.id).await.unwrap(),
        Some(TeamRole::Admin)
    );
    store
        .set_team_member(t.id, member.id, TeamRole::Admin)
        .await
        .unwrap();
    store
        .set_team_member(t.id, w.user.id, TeamRole::Member)
        .await
        .unwrap();
    assert_eq!(
        store.team_role(t.id, member.id).await.unwrap(),
        Some(TeamRole::Admin)
    );
    store
        .set_team_member(t.id, w.user.id, TeamRole::Admin)
        .await
        .unwrap();

    // Team keys and policies are listed by team, not by owner.
    let mut k = key(w.tenant.id, None, KeyKind::User);
    k.team = Some(t.id);
    store.insert_key(&k).await.unwrap();
    let p = policy(w.tenant.id, vec![Permission::FullAccess]).for_team(t.id);
    store.insert_policy(&p).await.unwrap();
    assert_eq!(store.list_team_keys(t.id).await.unwrap(), vec![k.clone()]);
    assert_eq!(store.get_key(k.id).await.unwrap().team, Some(t.id));
    assert_eq!(
        store.list_team_policies(t.id).await.unwrap(),
        vec![p.clone()]
    );
    assert!(store.list_team_keys(theirs.id).await.unwrap().is_empty());
    assert!(store
        .list_keys(w.tenant.id, Some(w.user.id))
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != k.id));
    let mut ghost = key(w.tenant.id, None, KeyKind::User);
    ghost.team = Some(crate::ids::TeamId::random());
    assert!(
        store.insert_key(&ghost).await.is_err(),
        "a key of a missing team"
    );

    // Authorizations on the team key: one for the member, one for the admin; one on the
    // member's own key, which team removal must not touch.
    let grant = |u: crate::ids::UserId, key_id| {
        let store = store.clone();
        let tenant = w.tenant.id;
        let policy_id = p.id;
        async move {
            let bunker = key(tenant, Some(u), KeyKind::Bunker);
            store.insert_key(&bunker).await.unwrap();
            let a = authorization(tenant, u, key_id, &bunker, policy_id, None);
            store.insert_authorization(&a).await.unwrap();
            a
        }
    };
    let for_member = grant(member.id, k.id).await;
    let for_admin = grant(w.user.id, k.id).await;
    let own_key = key(w.tenant.id, Some(member.id), KeyKind::User);
    store.insert_key(&own_key).await.unwrap();
    let personal = grant(member.id, own_key.id).await;
    let ids: Vec<_> = store
        .list_team_authorizations(t.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&for_member.id) && ids.contains(&for_admin.id));

    let feed_start = store.latest_change().await.unwrap();
    let at = Timestamp::from(1_700_000_500);
    assert_eq!(
        store.remove_team_member(t.id, member.id, at).await.unwrap(),
        vec![for_member.id]
    );
    assert_eq!(store.team_role(t.id, member.id).await.unwrap(), None);
    let gone = store.get_authorization(for_member.id).await.unwrap();
    assert_eq!(gone.revoked_at, Some(at));
    assert!(
        gone.version > for_member.version,
        "the revocation bumps the version"
    );
    assert_eq!(
        store
            .get_authorization(for_admin.id)
            .await
            .unwrap()
            .revoked_at,
        None
    );
    assert_eq!(
        store
            .get_authorization(personal.id)
            .await
            .unwrap()
            .revoked_at,
        None
    );
    let feed = store.changes_since(feed_start, 100).await.unwrap();
    assert!(
        feed.iter()
            .any(|c| c.what == Changed::Authorization(for_member.id)),
        "removal puts the revoked authorization in the change feed: {feed:?}"
    );
    assert!(matches!(
        store.remove_team_member(t.id, member.id, at).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store
            .remove_team_member(crate::ids::TeamId::random(), member.id, at)
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_team_member(crate::ids::TeamId::random(), member.id, TeamRole::Member)
            .await,
        Err(Error::NotFound { .. })
    ));
    // A member of a team cannot be deleted as an account.
    assert!(matches!(
        store.delete_user(w.user.id).await,
        Err(Error::Conflict(_))
    ));
}

/// Key replacement: new pubkey and envelope under the same id, the key's authorizations
/// revoked (others untouched), the key named in the change feed; refusals change nothing.
pub async fn key_replacement(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a1 = w.authorization(store, None).await;
    let a2 = w.authorization(store, None).await;
    let revoked_before = store
        .revoke_authorization(a2.id, Timestamp::from(1_700_000_001))
        .await
        .unwrap();
    let other_key = key(w.tenant.id, Some(w.user.id), KeyKind::User);
    store.insert_key(&other_key).await.unwrap();

    let fresh = key(w.tenant.id, None, KeyKind::User);
    let new = StoredKey {
        pubkey: fresh.pubkey,
        envelope: fresh.envelope.clone(),
        ..w.key.clone()
    };
    let feed_start = store.latest_change().await.unwrap();
    let at = Timestamp::from(1_700_000_900);
    let revoked = store.replace_key_secret(&new, at).await.unwrap();
    assert_eq!(
        revoked,
        vec![a1.id],
        "only the active authorization is revoked now"
    );
    let stored = store.get_key(w.key.id).await.unwrap();
    assert_eq!(stored, new, "pubkey and envelope replaced, the rest kept");
    assert_eq!(
        store.get_authorization(a1.id).await.unwrap().revoked_at,
        Some(at)
    );
    assert_eq!(
        store.get_authorization(a2.id).await.unwrap().revoked_at,
        revoked_before.revoked_at,
        "an earlier revocation keeps its time"
    );
    let feed = store.changes_since(feed_start, 100).await.unwrap();
    assert!(
        feed.iter().any(|c| c.what == Changed::Key(w.key.id)),
        "{feed:?}"
    );
    assert!(
        feed.iter().any(|c| c.what == Changed::Authorization(a1.id)),
        "{feed:?}"
    );

    // The pubkey of another stored key of the tenant: refused, nothing changes.
    let clash = StoredKey {
        pubkey: other_key.pubkey,
        ..new.clone()
    };
    assert!(matches!(
        store.replace_key_secret(&clash, at).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(store.get_key(w.key.id).await.unwrap(), new);
    // Bunker keys, other tenants' views and missing keys are not found.
    let bunker = StoredKey {
        pubkey: pubkey(),
        ..w.bunker.clone()
    };
    assert!(matches!(
        store.replace_key_secret(&bunker, at).await,
        Err(Error::NotFound { .. })
    ));
    let elsewhere = StoredKey {
        tenant_id: crate::ids::TenantId::random(),
        pubkey: pubkey(),
        ..new.clone()
    };
    assert!(matches!(
        store.replace_key_secret(&elsewhere, at).await,
        Err(Error::NotFound { .. })
    ));
    let missing = StoredKey {
        id: crate::ids::KeyId::random(),
        ..fresh
    };
    assert!(matches!(
        store.replace_key_secret(&missing, at).await,
        Err(Error::NotFound { .. })
    ));
}
