//! Limits on password guessing and on account creation, per client address and e-mail.
//!
//! There is no lockout that an attacker elsewhere can trigger for the owner:
//! - **Per client address:** login attempts a minute (any e-mail) and registrations an
//!   hour ([`ClientAddr::limit_key`]: an IPv4 address or an IPv6 /64).
//! - **Per e-mail and client address:** after `login_free_failures` failures in a row,
//!   each further attempt from that address must wait 1 s, then 2, 4, … up to
//!   `login_max_delay` (429 with `Retry-After`, even with the right password). A success
//!   clears them; the count lapses twice the longest delay after the latest failure.
//! - **Per e-mail, across addresses:** once the account has had
//!   `login_failures_per_email` failures in the current 15-minute window, addresses the
//!   account never logged in from are refused until the window ends. The addresses it
//!   did log in from (or reset its password from, which proves the mailbox) in the last
//!   30 days are exempt, so a distributed guesser gets at most that many guesses a window
//!   while the owner keeps logging in from home, and from a new place can reset the
//!   password by mail and log in there.
//!
//! Failures are counted whether or not the account exists, so answers do not reveal it.
//! Each instance counts in memory; in a cluster the same counts are also kept in Redis
//! ([`SharedLoginLimits`]) and the larger of the two decides, so a load balancer
//! spreading attempts does not multiply any budget. When Redis fails, the instance's own
//! counts still apply.

use std::time::Duration;

use super::client_addr::ClientAddr;
use super::rate_limit::{too_many, until_window_ends, KeyedLimit};
use super::ApiError;
use crate::cluster::login_limits::{now_ms, window_index, SharedFailures, SharedLoginLimits};
use crate::config::AccountLimits;

/// The account failure windows.
pub const EMAIL_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an address stays known to an account after a login or reset from it.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The first delay after the free failures; each further failure doubles it.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// Entries each in-memory table keeps at most (the oldest go first).
const CAPACITY: u64 = 200_000;

/// Failures in a row of one e-mail from one address.
#[derive(Debug, Clone, Copy, Default)]
struct InARow {
    n: u32,
    last_ms: u64,
}

/// Login and registration limits.
#[derive(Debug)]
pub struct LoginGuard {
    free_failures: u32,
    max_delay: Duration,
    failures_per_email: u32,
    per_address: KeyedLimit,
    registrations: KeyedLimit,
    lookups: KeyedLimit,
    in_a_row: moka::sync::Cache<String, InARow>,
    windows: moka::sync::Cache<(String, u64), u32>,
    known: moka::sync::Cache<String, ()>,
    shared: Option<SharedLoginLimits>,
}

/// What the limits count by: an account's login name within its tenant (an e-mail is a
/// different account in each tenant).
pub(crate) fn account_key(tenant: keycast_core::TenantId, login: &str) -> String {
    format!("{tenant}/{login}")
}

fn pair(account: &str, address: &ClientAddr) -> String {
    format!("{account}\u{0}{}", address.limit_key())
}

/// How long the `n`th failure in a row makes the next attempt wait (none before `free`).
fn delay(n: u32, free: u32, max: Duration) -> Duration {
    if n < free {
        return Duration::ZERO;
    }
    let doublings = (n - free).min(40);
    FIRST_DELAY
        .saturating_mul(1u32 << doublings.min(31))
        .min(max)
}

impl LoginGuard {
    /// The limits of `settings`, shared through `shared` in a cluster.
    pub fn new(settings: &AccountLimits, shared: Option<SharedLoginLimits>) -> Self {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        let keep = settings.login_max_delay * 2;
        Self {
            free_failures: settings.login_free_failures,
            max_delay: settings.login_max_delay,
            failures_per_email: settings.login_failures_per_email,
            per_address: KeyedLimit::new(
                "login",
                settings.logins_per_address_per_minute,
                minute,
                shared.clone(),
            ),
            registrations: KeyedLimit::new(
                "register",
                settings.registrations_per_address_per_hour,
                hour,
                shared.clone(),
            ),
            lookups: KeyedLimit::new(
                "lookup",
                settings.email_lookups_per_hour,
                hour,
                shared.clone(),
            ),
            in_a_row: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(keep)
                .build(),
            windows: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(EMAIL_WINDOW * 2)
                .build(),
            known: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KNOWN_FOR)
                .build(),
            shared,
        }
    }

    /// Whether `account` may try a password from `address` now; 429 with `Retry-After`
    /// otherwise. Counts the attempt against the address's budget.
    pub(crate) async fn admit(&self, account: &str, address: &ClientAddr) -> Result<(), ApiError> {
        let key = pair(account, address);
        let local = self.in_a_row.get(&key).unwrap_or_default();
        let now = now_ms();
        let mut shared = SharedFailures::default();
        if let Some(s) = &self.shared {
            if let Some(view) = s.view(account, &address.limit_key(), EMAIL_WINDOW).await {
                shared = view;
            }
        }
        // In a row, from this address.
        let n = local.n.max(shared.failures);
        let last = local.last_ms.max(shared.last_failure_ms);
        let wait = delay(n, self.free_failures, self.max_delay);
        let until = last.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        if now < until {
            return Err(too_many(
                "too many failed logins from this address; wait before trying again",
                Duration::from_millis(until - now),
            ));
        }
        // The account's failures from everywhere, unless this address is known to it.
        let known = shared.known || self.known.contains_key(&key);
        let window = window_index(now, EMAIL_WINDOW);
        let in_window = self
            .windows
            .get(&(account.to_owned(), window))
            .unwrap_or(0)
            .max(shared.account_failures);
        if !known && in_window >= self.failures_per_email {
            return Err(too_many(
                "too many failed logins for this account; log in from where you did before, \
                 reset the password by mail, or wait",
                until_window_ends(EMAIL_WINDOW),
            ));
        }
        self.per_address
            .admit(
                &address.limit_key(),
                "too many login attempts from this address; try again later",
            )
            .await
    }

    /// Counts a failed attempt of `account` from `address`.
    pub(crate) async fn failed(&self, account: &str, address: &ClientAddr) {
        let now = now_ms();
        let key = pair(account, address);
        let previous = self.in_a_row.get(&key).unwrap_or_default();
        self.in_a_row.insert(
            key,
            InARow {
                n: previous.n.saturating_add(1),
                last_ms: now,
            },
        );
        let window = (account.to_owned(), window_index(now, EMAIL_WINDOW));
        let so_far = self.windows.get(&window).unwrap_or(0);
        self.windows.insert(window, so_far.saturating_add(1));
        if let Some(s) = &self.shared {
            let keep = self.max_delay * 2;
            s.failed(account, &address.limit_key(), now, keep, EMAIL_WINDOW)
                .await;
        }
    }

    /// A successful login (or password reset) of `account` from `address`: its failures
    /// in a row there are cleared and the address becomes known to the account.
    pub(crate) async fn succeeded(&self, account: &str, address: &ClientAddr) {
        let key = pair(account, address);
        self.in_a_row.invalidate(&key);
        self.known.insert(key, ());
        if let Some(s) = &self.shared {
            s.succeeded(account, &address.limit_key(), KNOWN_FOR).await;
        }
    }

    /// Counts an attempt from `address` against its login budget (password reset, which
    /// hashes too); 429 with `Retry-After` over it.
    pub(crate) async fn attempt(&self, address: &ClientAddr) -> Result<(), ApiError> {
        self.per_address
            .admit(
                &address.limit_key(),
                "too many attempts from this address; try again later",
            )
            .await
    }

    /// Counts a registration from `address`; 429 with `Retry-After` over the limit.
    pub(crate) async fn register(&self, address: &ClientAddr) -> Result<(), ApiError> {
        self.registrations
            .admit(
                &address.limit_key(),
                "too many registrations from this address; try again later",
            )
            .await
    }

    /// Counts a look-up of another account by e-mail made by `account` (adding a team
    /// member); 429 with `Retry-After` over the limit.
    pub(crate) async fn lookup(&self, account: keycast_core::UserId) -> Result<(), ApiError> {
        self.lookups
            .admit(
                &account.to_string(),
                "too many e-mail look-ups from this account; try again later",
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use axum::http::StatusCode;

    use super::*;

    fn settings() -> AccountLimits {
        crate::Config::load(None, |k| match k {
            "KEYCAST_DATA_DIR" => Some("/nonexistent".into()),
            "KEYCAST_LOGIN_FAILURES_PER_EMAIL" => Some("4".into()),
            "KEYCAST_LOGIN_FREE_FAILURES" => Some("2".into()),
            _ => None,
        })
        .expect("config")
        .accounts
    }

    fn at(ip: &str) -> ClientAddr {
        ClientAddr(ip.parse::<IpAddr>().expect("ip"))
    }

    #[test]
    fn delays_double_from_the_free_failures_up_to_the_cap() {
        let max = Duration::from_secs(900);
        let d = |n| delay(n, 5, max).as_secs();
        assert_eq!((d(0), d(4), d(5), d(6), d(7)), (0, 0, 1, 2, 4));
        assert_eq!(d(15), 900, "capped");
        assert_eq!(d(u32::MAX), 900, "no overflow");
    }

    #[tokio::test]
    async fn failures_slow_one_address_and_the_account_budget_spares_known_ones() {
        let guard = LoginGuard::new(&settings(), None);
        let ann = "t/ann@example.org";
        let (home, attacker) = (at("192.0.2.1"), at("198.51.100.1"));
        guard.admit(ann, &home).await.expect("first");
        guard.succeeded(ann, &home).await;
        for _ in 0..2 {
            guard.admit(ann, &attacker).await.expect("free failures");
            guard.failed(ann, &attacker).await;
        }
        let e = guard.admit(ann, &attacker).await.expect_err("delayed");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        guard
            .admit(ann, &home)
            .await
            .expect("another address is not delayed");
        // Two more failures from elsewhere exhaust the account's budget of 4.
        for ip in ["203.0.113.1", "203.0.113.2"] {
            guard.admit(ann, &at(ip)).await.expect("fresh address");
            guard.failed(ann, &at(ip)).await;
        }
        let e = guard
            .admit(ann, &at("203.0.113.3"))
            .await
            .expect_err("budget spent");
        assert!(e.retry_after.is_some_and(|s| s <= EMAIL_WINDOW.as_secs()));
        guard
            .admit(ann, &home)
            .await
            .expect("a known address is exempt");
        guard
            .admit("t/bob@example.org", &at("203.0.113.3"))
            .await
            .expect("other accounts are not affected");
    }
}
