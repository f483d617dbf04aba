//! Password hashing with argon2id (the argon2 crate's defaults: 19 MiB, 2 passes), run off
//! the async runtime because each hash costs tens of milliseconds of CPU.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keycast_core::PasswordHash;
use zeroize::Zeroizing;

/// Shortest password accepted, in characters.
pub const MIN_LEN: usize = 10;
/// Longest password accepted, in bytes (bounds the hashing work an attacker can ask for).
pub const MAX_BYTES: usize = 1024;

/// Why a password is refused at registration, fit to show the user.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("password must have at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("password must be at most {MAX_BYTES} bytes"));
    }
    Ok(())
}

/// Hashes on the blocking pool.
pub async fn hash(password: Zeroizing<String>) -> keycast_core::Result<PasswordHash> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| keycast_core::Error::Internal(format!("argon2: {e}")))?;
        PasswordHash::parse(&phc.to_string())
    })
    .await
    .map_err(|e| keycast_core::Error::Internal(format!("hashing task: {e}")))?
}

/// Verifies on the blocking pool. With `None` (no such account) it still does the work
/// of one verification against a fixed hash, so timing does not tell which e-mails exist.
pub async fn verify(password: Zeroizing<String>, stored: Option<PasswordHash>) -> bool {
    tokio::task::spawn_blocking(move || {
        let phc = stored.as_ref().map_or(DUMMY, |h| h.as_str());
        let Ok(parsed) = argon2::PasswordHash::new(phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && stored.is_some()
    })
    .await
    .unwrap_or(false)
}

/// A real argon2id hash (default parameters) of a random string nobody knows.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y2JXOXNhbHRzYWx0c2E$PU3ZSt7JdWhAtqUVbsYEJ4I8wFm2WiyrMkuLxT4DyVM";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash(Zeroizing::new("correct horse battery".into()))
            .await
            .expect("hash");
        assert!(h.as_str().starts_with("$argon2id$"));
        assert!(
            verify(
                Zeroizing::new("correct horse battery".into()),
                Some(h.clone())
            )
            .await
        );
        assert!(!verify(Zeroizing::new("wrong horse battery".into()), Some(h)).await);
        assert!(!verify(Zeroizing::new("anything".into()), None).await);
        assert!(
            argon2::PasswordHash::new(DUMMY).is_ok(),
            "the dummy hash parses"
        );
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough ✓").is_ok());
        assert!(check_strength(&"x".repeat(MAX_BYTES + 1)).is_err());
    }
}
