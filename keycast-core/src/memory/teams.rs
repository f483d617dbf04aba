//! Teams and key replacement for [`super::key_store::MemoryKeyStore`]: the same rules
//! the SQL stores enforce with constraints and transactions, under the store's one lock.

use std::collections::BTreeMap;

use nostr::Timestamp;

use super::key_store::Inner;
use crate::error::{Error, Result};
use crate::ids::{AuthorizationId, TeamId, UserId};
use crate::model::authorization::Authorization;
use crate::model::change::Changed;
use crate::model::key::{KeyKind, StoredKey};
use crate::model::policy::Policy;
use crate::model::team::{Team, TeamMember, TeamRole};

/// Memberships by (team, user).
pub(super) type Members = BTreeMap<(TeamId, UserId), TeamMember>;

impl Inner {
    pub(super) fn create_team(&mut self, team: &Team, admin: UserId) -> Result<()> {
        if !self.tenants.contains_key(&team.tenant_id) {
            return Err(Error::NotFound { what: "tenant" });
        }
        if self
            .users
            .get(&admin)
            .is_none_or(|u| u.tenant_id != team.tenant_id)
        {
            return Err(Error::NotFound { what: "user" });
        }
        let taken = self
            .teams
            .values()
            .any(|t| t.id == team.id || (t.tenant_id == team.tenant_id && t.name == team.name));
        if taken {
            return Err(Error::AlreadyExists { what: "team" });
        }
        self.teams.insert(team.id, team.clone());
        self.team_members.insert(
            (team.id, admin),
            TeamMember {
                team_id: team.id,
                user_id: admin,
                role: TeamRole::Admin,
                added_at: team.created_at,
            },
        );
        Ok(())
    }

    pub(super) fn team(&self, id: TeamId) -> Result<&Team> {
        self.teams.get(&id).ok_or(Error::NotFound { what: "team" })
    }

    pub(super) fn list_teams(&self, user: UserId) -> Vec<(Team, TeamRole)> {
        let mut teams: Vec<(Team, TeamRole)> = self
            .team_members
            .values()
            .filter(|m| m.user_id == user)
            .filter_map(|m| self.teams.get(&m.team_id).map(|t| (t.clone(), m.role)))
            .collect();
        teams.sort_by(|a, b| a.0.name.as_str().cmp(b.0.name.as_str()));
        teams
    }

    pub(super) fn team_members_of(&self, team: TeamId) -> Vec<TeamMember> {
        let mut members: Vec<TeamMember> = self
            .team_members
            .range((team, UserId::from_uuid(uuid::Uuid::nil()))..)
            .take_while(|((t, _), _)| *t == team)
            .map(|(_, m)| m.clone())
            .collect();
        members.sort_by_key(|m| m.added_at);
        members
    }

    fn admins_left(&self, team: TeamId) -> bool {
        self.team_members
            .values()
            .any(|m| m.team_id == team && m.role == TeamRole::Admin)
    }

    pub(super) fn set_team_member(
        &mut self,
        team: TeamId,
        user: UserId,
        role: TeamRole,
    ) -> Result<TeamMember> {
        let tenant = self.team(team)?.tenant_id;
        if self.users.get(&user).is_none_or(|u| u.tenant_id != tenant) {
            return Err(Error::NotFound { what: "user" });
        }
        let member = TeamMember {
            team_id: team,
            user_id: user,
            role,
            added_at: Timestamp::now(),
        };
        let before = self.team_members.insert((team, user), member.clone());
        if !self.admins_left(team) {
            match before {
                Some(b) => self.team_members.insert((team, user), b),
                None => self.team_members.remove(&(team, user)),
            };
            return Err(Error::Conflict("a team needs at least one admin".into()));
        }
        Ok(member)
    }

    pub(super) fn remove_team_member(
        &mut self,
        team: TeamId,
        user: UserId,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>> {
        self.team(team)?;
        let member = self
            .team_members
            .remove(&(team, user))
            .ok_or(Error::NotFound {
                what: "team member",
            })?;
        if !self.admins_left(team) {
            self.team_members.insert((team, user), member);
            return Err(Error::Conflict("a team needs at least one admin".into()));
        }
        let team_keys: Vec<_> = self
            .keys
            .values()
            .filter(|k| k.team == Some(team))
            .map(|k| k.id)
            .collect();
        Ok(self.revoke_where(at, |a| a.user_id == user && team_keys.contains(&a.key_id)))
    }

    /// Revokes at `at` every active authorization `pick` chooses (version bumped, in the
    /// change feed); returns them.
    pub(super) fn revoke_where(
        &mut self,
        at: Timestamp,
        pick: impl Fn(&Authorization) -> bool,
    ) -> Vec<AuthorizationId> {
        let revoked: Vec<AuthorizationId> = self
            .authorizations
            .values_mut()
            .filter(|a| a.revoked_at.is_none() && pick(a))
            .map(|a| {
                a.revoked_at = Some(at);
                a.version += 1;
                a.id
            })
            .collect();
        for id in &revoked {
            self.changed(Changed::Authorization(*id));
        }
        revoked
    }

    pub(super) fn team_keys(&self, team: TeamId) -> Vec<StoredKey> {
        let mut keys: Vec<StoredKey> = self
            .keys
            .values()
            .filter(|k| k.team == Some(team))
            .cloned()
            .collect();
        keys.sort_by_key(|k| (k.created_at, k.id));
        keys
    }

    pub(super) fn team_policies(&self, team: TeamId) -> Vec<Policy> {
        let mut list: Vec<Policy> = self
            .policies
            .values()
            .filter(|p| p.team == Some(team))
            .cloned()
            .collect();
        list.sort_by_key(|p| p.id);
        list
    }

    pub(super) fn team_authorizations(&self, team: TeamId) -> Vec<Authorization> {
        let mut list: Vec<Authorization> = self
            .authorizations
            .values()
            .filter(|a| {
                self.keys
                    .get(&a.key_id)
                    .is_some_and(|k| k.team == Some(team))
            })
            .cloned()
            .collect();
        list.sort_by_key(|a| (a.created_at, a.id));
        list
    }

    pub(super) fn replace_key_secret(
        &mut self,
        key: &StoredKey,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>> {
        let stored = self
            .keys
            .get(&key.id)
            .filter(|k| k.tenant_id == key.tenant_id && k.kind == KeyKind::User)
            .ok_or(Error::NotFound { what: "key" })?;
        let taken = self
            .keys
            .values()
            .any(|k| k.id != key.id && k.tenant_id == key.tenant_id && k.pubkey == key.pubkey);
        if taken {
            return Err(Error::AlreadyExists { what: "key" });
        }
        let replaced = StoredKey {
            pubkey: key.pubkey,
            envelope: key.envelope.clone(),
            ..stored.clone()
        };
        self.keys.insert(key.id, replaced);
        let revoked = self.revoke_where(at, |a| a.key_id == key.id);
        self.changed(Changed::Key(key.id));
        Ok(revoked)
    }
}
