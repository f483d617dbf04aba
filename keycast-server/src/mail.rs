//! Outgoing mail for the account flows (e-mail verification, password reset).
//!
//! With `smtp_url` set (`smtp://host:port`, `smtps://user:password@host`, or
//! `smtp://…?tls=required`; lettre's URL forms), messages go out over SMTP. Without it, in
//! development, each message is written as an `.eml` file to `<data dir>/mail/` (the data
//! dir is private): the messages carry single-use tokens, which never go to the logs.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Result, ServerError};

/// The SMTP URL setting; `Debug` hides it (it may carry a password).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(pub String);

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or("");
        write!(f, "SmtpUrl({scheme}://<redacted>)")
    }
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// An SMTP relay.
    Smtp {
        /// The pooled connection.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The `From` address.
        from: Mailbox,
    },
    /// `.eml` files in a directory (development).
    Files {
        /// The writer.
        transport: AsyncFileTransport<Tokio1Executor>,
        /// The directory.
        dir: PathBuf,
        /// The `From` address.
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Self::Files { dir, .. } => write!(f, "Mailer::Files({})", dir.display()),
        }
    }
}

/// Checks a `From` address.
pub(crate) fn parse_from(setting: &str, value: &str) -> Result<Mailbox> {
    value.parse().map_err(|e| {
        ServerError::Config(format!("{setting}: {value:?} is not a mail address: {e}"))
    })
}

/// Checks an SMTP URL without connecting.
pub(crate) fn check_smtp_url(setting: &str, url: &str) -> Result<()> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map(|_| ())
        .map_err(|_| {
            ServerError::Config(format!(
                "{setting}: not an SMTP URL (smtp://host:port, smtps://user:password@host, or smtp://host?tls=required)"
            ))
        })
}

impl Mailer {
    /// SMTP when `smtp_url` is set, else files in `<data_dir>/mail`.
    pub fn new(smtp_url: Option<&SmtpUrl>, from: &str, data_dir: &std::path::Path) -> Result<Self> {
        let from = parse_from("mail_from", from)?;
        match smtp_url {
            Some(url) => {
                check_smtp_url("smtp_url", &url.0)?;
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
                    .map_err(|e| ServerError::Config(format!("smtp_url: {e}")))?
                    .build();
                Ok(Self::Smtp { transport, from })
            }
            None => {
                let dir = data_dir.join("mail");
                crate::lock::create_private_dir(&dir)?;
                Ok(Self::Files {
                    transport: AsyncFileTransport::new(&dir),
                    dir,
                    from,
                })
            }
        }
    }

    /// Sends a plain-text message to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| MailError("bad recipient address".into()))?;
        let from = match self {
            Self::Smtp { from, .. } | Self::Files { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(|e| MailError(format!("cannot build the message: {e}")))?;
        match self {
            Self::Smtp { transport, .. } => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError(format!("SMTP: {e}"))),
            Self::Files { transport, dir, .. } => {
                let id = transport
                    .send(message)
                    .await
                    .map_err(|e| MailError(format!("writing the message: {e}")))?;
                tracing::info!(file = %dir.join(format!("{id}.eml")).display(), "mail written (no smtp_url set)");
                Ok(())
            }
        }
    }
}

/// A message that could not be sent; safe to log (no addresses or tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailError(pub String);

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_mail_settings_are_refused_and_urls_never_shown() {
        assert!(parse_from("mail_from", "keycast <keycast@example.org>").is_ok());
        assert!(parse_from("mail_from", "not an address").is_err());
        assert!(check_smtp_url("smtp_url", "smtp://127.0.0.1:2525").is_ok());
        assert!(check_smtp_url("smtp_url", "smtps://u:p@mail.example.org").is_ok());
        for bad in ["", "http://mail.example.org", "mail.example.org"] {
            assert!(check_smtp_url("smtp_url", bad).is_err(), "{bad:?}");
        }
        let url = SmtpUrl("smtps://user:hunter2@mail.example.org".into());
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
