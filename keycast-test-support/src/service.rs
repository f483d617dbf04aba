//! Tests that need an outside service (a database, a KMS, a browser, a binary) run when it
//! is configured, and otherwise skip locally but fail under CI
//! (`KEYCAST_TEST_REQUIRE_SERVICES=1`), so a missing service cannot pass as a skip there.

/// The value of env var `var` when set and non-empty; else [`missing_service`] naming it.
///
/// # Panics
/// When `var` is unset and `KEYCAST_TEST_REQUIRE_SERVICES=1`.
pub fn require_service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => missing_service(&format!("{var} is not set")),
    }
}

/// A service the test needs is missing (`why` says which): `None` after printing
/// `skipped: <why>`.
///
/// # Panics
/// Under `KEYCAST_TEST_REQUIRE_SERVICES=1`, with `why`.
pub fn missing_service<T>(why: &str) -> Option<T> {
    if std::env::var("KEYCAST_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why}, and KEYCAST_TEST_REQUIRE_SERVICES=1 requires it");
    }
    eprintln!("skipped: {why}");
    None
}
