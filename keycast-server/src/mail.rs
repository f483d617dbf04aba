//! Outgoing mail for the account flows (e-mail verification, password reset).
//!
//! With `smtp_url` set (`smtp://host:port`, `smtps://user:password@host`, or
//! `smtp://…?tls=required`; lettre's URL forms), messages go out over SMTP. Without it, in
//! development, each message is written as an `.eml` file to `<data dir>/mail/` (the data
//! dir is private, and each file is created 0600): the messages carry single-use tokens,
//! which never go to the logs.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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
    /// `.eml` files in a directory (development), each readable by the owner only.
    Files {
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
                Ok(Self::Files { dir, from })
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
            Self::Files { dir, .. } => {
                let path = dir.join(format!("{}.eml", uuid::Uuid::new_v4()));
                let bytes = message.formatted();
                let file = path.clone();
                tokio::task::spawn_blocking(move || write_private(&file, &bytes))
                    .await
                    .map_err(|e| MailError(format!("writing the message: {e}")))?
                    .map_err(|e| MailError(format!("writing the message: {e}")))?;
                tracing::info!(file = %path.display(), "mail written (no smtp_url set)");
                Ok(())
            }
        }
    }
}

/// Writes a new file at `path` that only its owner can read (it holds a token).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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

    #[cfg(unix)]
    #[tokio::test]
    async fn mail_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let data = std::env::temp_dir().join(format!("keycast-mail-{}", uuid::Uuid::new_v4()));
        let mailer = Mailer::new(None, "keycast <k@localhost>", &data).expect("mailer");
        mailer
            .send("ann@example.org", "Code", "the code: 1234\n".into())
            .await
            .expect("sent");
        let files: Vec<_> = std::fs::read_dir(data.join("mail"))
            .expect("mail dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let mode = std::fs::metadata(&files[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let text = std::fs::read_to_string(&files[0]).expect("read");
        assert!(text.contains("To: ann@example.org") && text.contains("the code: 1234"));
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let _ = std::fs::remove_dir_all(&data);
    }

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
