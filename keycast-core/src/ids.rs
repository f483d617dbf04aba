//! Opaque identifiers. Each is a UUID newtype so ids of different kinds cannot be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
            /// Wraps an existing UUID (e.g. read from a database column).
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            /// The 16 raw bytes, as bound into envelope AAD.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| Error::invalid($what, "not a UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

uuid_id!(
    /// A tenant: one domain or organisation served by a deployment.
    TenantId, "tenant id"
);
uuid_id!(
    /// A user account inside a tenant.
    UserId, "user id"
);
uuid_id!(
    /// A stored secret key (a user's Nostr key or an authorization's bunker key).
    KeyId, "key id"
);
uuid_id!(
    /// An app's connection to one key.
    AuthorizationId, "authorization id"
);
uuid_id!(
    /// A named set of permissions.
    PolicyId, "policy id"
);
uuid_id!(
    /// A team: accounts of one tenant sharing keys and policies.
    TeamId, "team id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = KeyId::random();
        assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
        assert_eq!(
            "not-a-uuid".parse::<KeyId>(),
            Err(Error::invalid("key id", "not a UUID"))
        );
    }
}
