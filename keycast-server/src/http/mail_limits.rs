//! How much mail one account, one recipient and one client address can make the server
//! send: every endpoint that mails a code is checked here before a code is issued, and
//! over a limit it answers 429 with `Retry-After` and sends nothing.
//!
//! - per account (verification and confirmation codes of a logged-in account);
//! - per recipient address, across tenants (the mailbox is one person's, whichever tenant
//!   the requests name);
//! - per client address, for forgot-password (no account is logged in there).
//!
//! Forgot-password has a recipient budget of its own and counts the recipient whether or
//! not it has an account, so its answers depend only on forgot-password requests, which
//! anyone can make for any address: a refusal does not reveal which addresses have an
//! account, nor that their owner asked for mail. A mailbox can so get twice the
//! recipient budget an hour: once from its own account, once from strangers.
//!
//! The key-replacement notice is not limited: it follows a replacement, which needs a
//! code from this budget.

use std::time::Duration;

use keycast_core::{Email, UserId};

use super::client_addr::ClientAddr;
use super::rate_limit::KeyedLimit;
use super::ApiError;
use crate::cluster::login_limits::SharedLoginLimits;
use crate::config::AccountLimits;

const MESSAGE: &str = "too many messages asked for; try again later";

/// The mail budgets.
#[derive(Debug)]
pub struct MailLimits {
    per_account: KeyedLimit,
    per_recipient: KeyedLimit,
    forgot_per_recipient: KeyedLimit,
    forgot_per_address: KeyedLimit,
}

impl MailLimits {
    /// The limits of `settings`, shared through `shared` in a cluster.
    pub fn new(settings: &AccountLimits, shared: Option<SharedLoginLimits>) -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            per_account: KeyedLimit::new(
                "mail-account",
                settings.mail_per_account_per_hour,
                hour,
                shared.clone(),
            ),
            per_recipient: KeyedLimit::new(
                "mail-recipient",
                settings.mail_per_recipient_per_hour,
                hour,
                shared.clone(),
            ),
            forgot_per_recipient: KeyedLimit::new(
                "forgot-recipient",
                settings.mail_per_recipient_per_hour,
                hour,
                shared.clone(),
            ),
            forgot_per_address: KeyedLimit::new(
                "forgot-address",
                settings.mail_per_address_per_hour,
                hour,
                shared,
            ),
        }
    }

    fn recipient(email: &Email) -> String {
        email.as_str().to_lowercase()
    }

    /// A message for the logged-in `account` at `to`.
    pub(crate) async fn for_account(&self, account: UserId, to: &Email) -> Result<(), ApiError> {
        self.per_account
            .admit(&account.to_string(), MESSAGE)
            .await?;
        self.per_recipient
            .admit(&Self::recipient(to), MESSAGE)
            .await
    }

    /// A forgot-password message to `to`, asked for from `from`, whether or not `to` has
    /// an account.
    pub(crate) async fn for_anyone(&self, from: &ClientAddr, to: &Email) -> Result<(), ApiError> {
        self.forgot_per_address
            .admit(&from.limit_key(), MESSAGE)
            .await?;
        self.forgot_per_recipient
            .admit(&Self::recipient(to), MESSAGE)
            .await
    }
}
