//! The permission presets a new connection offers (on `/ui/connect/new` and a team's
//! page): full access, or signing only some event kinds. One fieldset, one parser.

use std::collections::BTreeSet;

use keycast_core::Permission;

/// The preset radio buttons and the kinds field, for inside a form.
pub(super) const FIELDS: &str = "<fieldset><legend>The app may</legend>\
     <p><input type=\"radio\" id=\"preset-full\" name=\"preset\" value=\"full\" checked>\
     <label class=\"choice\" for=\"preset-full\">do everything: sign any event, encrypt and decrypt</label></p>\
     <p><input type=\"radio\" id=\"preset-kinds\" name=\"preset\" value=\"kinds\">\
     <label class=\"choice\" for=\"preset-kinds\">sign only the event kinds below \
     (encrypting and decrypting stay allowed)</label></p>\
     <label for=\"kinds\">Event kinds, comma-separated</label>\
     <input id=\"kinds\" name=\"kinds\" placeholder=\"1, 7\" inputmode=\"numeric\"></fieldset>";

/// The event kinds in `text` (comma-separated, spaces allowed), or what is wrong.
fn kinds(text: &str) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let kind = part.parse().map_err(|_| {
            let shown: String = part.chars().take(20).collect();
            format!(
                "\u{201c}{shown}\u{201d} is not an event kind (a whole number from 0 to 65535)."
            )
        })?;
        out.insert(kind);
    }
    if out.is_empty() {
        return Err("List at least one event kind to allow, such as 1 for short notes.".into());
    }
    Ok(out)
}

/// The permissions of the `preset` field (with `kinds` for `kinds`), or what is wrong.
pub(super) fn permissions(
    preset: Option<&str>,
    kind_list: Option<&str>,
) -> Result<Vec<Permission>, String> {
    match preset {
        Some("full") => Ok(vec![Permission::FullAccess]),
        Some("kinds") => Ok(vec![Permission::AllowedKinds {
            kinds: kinds(kind_list.unwrap_or(""))?,
        }]),
        _ => Err("Choose what the app may do: full access, or only some event kinds.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_comma_separated_numbers() {
        assert_eq!(kinds("1, 7,30023,1"), Ok(BTreeSet::from([1, 7, 30023])));
        assert_eq!(kinds(" 0 ,65535,"), Ok(BTreeSet::from([0, 65535])));
        for bad in ["", " , ", "1 7", "65536", "-1", "x", "1.5", "0x10"] {
            assert!(kinds(bad).is_err(), "{bad:?}");
        }
        let long = kinds(&"9".repeat(500)).expect_err("too big");
        assert!(long.chars().count() < 100, "{long}");
    }

    #[test]
    fn presets_map_to_permissions() {
        assert_eq!(
            permissions(Some("full"), Some("ignored")),
            Ok(vec![Permission::FullAccess])
        );
        assert_eq!(
            permissions(Some("kinds"), Some("1,7")),
            Ok(vec![Permission::AllowedKinds {
                kinds: BTreeSet::from([1, 7])
            }])
        );
        assert!(permissions(Some("kinds"), None).is_err());
        assert!(permissions(Some("admin"), Some("1")).is_err());
        assert!(permissions(None, None).is_err());
    }

    #[test]
    fn the_fields_are_the_ones_the_parser_reads() {
        for name in [
            "name=\"preset\" value=\"full\"",
            "value=\"kinds\"",
            "name=\"kinds\"",
        ] {
            assert!(FIELDS.contains(name), "{name}");
        }
    }
}
