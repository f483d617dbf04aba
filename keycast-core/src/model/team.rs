//! Teams: accounts of one tenant that share keys and policies. Admins manage members,
//! keys, policies and authorizations; members see and use what they were given.

use nostr::Timestamp;

use crate::error::{Error, Result};
use crate::ids::{TeamId, TenantId, UserId};
use crate::model::names::Label;

/// A team of one tenant. Its name is unique in the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Identity.
    pub id: TeamId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Human name.
    pub name: Label,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Team {
    /// A new team named `name`.
    pub fn new(tenant_id: TenantId, name: Label) -> Self {
        Self {
            id: TeamId::random(),
            tenant_id,
            name,
            created_at: Timestamp::now(),
        }
    }
}

/// What a member may do in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeamRole {
    /// Manages members, keys, policies and every authorization on the team's keys.
    Admin,
    /// Sees the team's keys and policies and the authorizations made for them.
    Member,
}

impl TeamRole {
    /// Stable name for storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(TeamRole::Admin),
            "member" => Ok(TeamRole::Member),
            _ => Err(Error::invalid("team role", "expected 'admin' or 'member'")),
        }
    }
}

/// One account's membership of a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    /// The team.
    pub team_id: TeamId,
    /// The account.
    pub user_id: UserId,
    /// Its role.
    pub role: TeamRole,
    /// When it joined (or last changed role).
    pub added_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_refused() {
        for role in [TeamRole::Admin, TeamRole::Member] {
            assert_eq!(TeamRole::parse(role.as_str()), Ok(role));
        }
        assert!(TeamRole::parse("owner").is_err());
        assert!(TeamRole::parse("Admin").is_err());
        assert!(TeamRole::parse("").is_err());
    }
}
