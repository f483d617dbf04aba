//! The relays the NIP-46 service listens on, recorded in the database when the server
//! starts, so the CLI (a separate process, perhaps run without the server's environment)
//! puts the relays the server watches in the bunker URIs it prints, and a mismatch is an
//! error instead of a URI nobody answers.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use keycast_core::nostr::{RelayUrl, Timestamp};
use keycast_storage::Database;

/// The setting's name in `server_settings`.
const SETTING: &str = "nip46_relays";

/// Records `relays` as the ones the service listens on; logs when they changed.
pub async fn record(db: &Database, relays: &[RelayUrl]) -> keycast_core::Result<()> {
    let value = serde_json::to_string(&relays.iter().map(RelayUrl::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    let before = db.setting(SETTING).await?;
    if before.as_deref() != Some(value.as_str()) {
        if let Some(before) = before {
            tracing::warn!(
                before,
                now = value,
                "the NIP-46 relays changed; bunker URIs handed out before name the old ones"
            );
        }
        let now = i64::try_from(Timestamp::now().as_secs()).unwrap_or(i64::MAX);
        db.set_setting(SETTING, &value, now).await?;
    }
    Ok(())
}

/// The relays a bunker URI made by the CLI names. `configured` are this process's own
/// `KEYCAST_RELAYS` (empty: none set) and `fallback` what it would use by itself.
///
/// - A server recorded its relays and none are configured here: the recorded ones.
/// - Both, and they differ: an error naming both, so nothing is created.
/// - Nothing recorded (no server has run on this database yet): `fallback`, and a note
///   for stderr that the server must listen on them.
pub async fn for_cli(
    db: &Database,
    configured: &[RelayUrl],
    fallback: Vec<RelayUrl>,
) -> anyhow::Result<(Vec<RelayUrl>, Option<String>)> {
    let recorded = db
        .setting(SETTING)
        .await
        .context("reading the relays the server recorded")?;
    let Some(recorded) = recorded else {
        let note = format!(
            "note: no server has recorded its NIP-46 relays in this database yet; the URI names \
             this configuration's ({}), which the server must listen on",
            list(&fallback)
        );
        return Ok((fallback, Some(note)));
    };
    let urls: Vec<String> = serde_json::from_str(&recorded)
        .with_context(|| format!("the recorded NIP-46 relays are unreadable: {recorded:?}"))?;
    let recorded = urls
        .iter()
        .map(|u| RelayUrl::parse(u))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the recorded NIP-46 relays are unreadable: {recorded:?}"))?;
    let set = |r: &[RelayUrl]| r.iter().cloned().collect::<BTreeSet<_>>();
    if !configured.is_empty() && set(configured) != set(&recorded) {
        bail!(
            "KEYCAST_RELAYS here ({}) differs from the relays the server listens on ({}): a bunker \
             URI on these relays would not be answered. Run this command with the server's \
             KEYCAST_RELAYS, or without KEYCAST_RELAYS to use the server's",
            list(configured),
            list(&recorded)
        );
    }
    Ok((recorded, None))
}

fn list(relays: &[RelayUrl]) -> String {
    relays
        .iter()
        .map(RelayUrl::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
