//! The permission presets a new connection offers: full access, "ask me each time" (every
//! request waits for the account's approval at `/ui/approvals/{id}`), or signing only some
//! event kinds. One fieldset and one parser for `/ui/connect/new` and a team's page.

use std::collections::BTreeSet;

use keycast_core::Permission;

/// Which presets a form offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presets {
    /// The account's own connections: full access, ask me each time, or some kinds.
    Own,
    /// A team admin's connections on a team key, for itself or a member: full access or
    /// some kinds. Not "ask me each time": the account a connection is made for decides
    /// its requests, which is not who fills in this form when it is for a member.
    Team,
}

const FULL: &str = "<p><input type=\"radio\" id=\"preset-full\" name=\"preset\" value=\"full\" checked>\
     <label class=\"choice\" for=\"preset-full\">do everything: sign any event, encrypt and decrypt</label></p>";
const APPROVE: &str =
    "<p><input type=\"radio\" id=\"preset-approve\" name=\"preset\" value=\"approve\">\
     <label class=\"choice\" for=\"preset-approve\">ask me each time: every request waits \
     until I approve it here</label></p>";
const KINDS: &str = "<p><input type=\"radio\" id=\"preset-kinds\" name=\"preset\" value=\"kinds\">\
     <label class=\"choice\" for=\"preset-kinds\">sign only the event kinds below \
     (encrypting and decrypting stay allowed)</label></p>\
     <label for=\"kinds\">Event kinds, comma-separated</label>\
     <input id=\"kinds\" name=\"kinds\" placeholder=\"1, 7\" inputmode=\"numeric\">";

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

impl Presets {
    /// The preset radio buttons and the kinds field, for inside a form.
    pub(super) fn fields(self) -> String {
        let approve = if self == Presets::Own { APPROVE } else { "" };
        format!("<fieldset><legend>The app may</legend>{FULL}{approve}{KINDS}</fieldset>")
    }

    /// The permissions of the `preset` field (with `kinds` for `kinds`), or what is wrong;
    /// a preset this form does not offer is wrong too.
    pub(super) fn permissions(
        self,
        preset: Option<&str>,
        kind_list: Option<&str>,
    ) -> Result<Vec<Permission>, String> {
        match preset {
            Some("full") => Ok(vec![Permission::FullAccess]),
            Some("approve") if self == Presets::Own => {
                Ok(vec![Permission::FullAccess, Permission::RequireApproval])
            }
            Some("kinds") => Ok(vec![Permission::AllowedKinds {
                kinds: kinds(kind_list.unwrap_or(""))?,
            }]),
            _ if self == Presets::Own => Err("Choose what the app may do: full access, ask you \
                                             each time, or only some event kinds."
                .into()),
            _ => Err("Choose what the app may do: full access, or only some event kinds.".into()),
        }
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
        for presets in [Presets::Own, Presets::Team] {
            assert_eq!(
                presets.permissions(Some("full"), Some("ignored")),
                Ok(vec![Permission::FullAccess])
            );
            assert_eq!(
                presets.permissions(Some("kinds"), Some("1,7")),
                Ok(vec![Permission::AllowedKinds {
                    kinds: BTreeSet::from([1, 7])
                }])
            );
            assert!(presets.permissions(Some("kinds"), None).is_err());
            assert!(presets.permissions(Some("admin"), Some("1")).is_err());
            assert!(presets.permissions(None, None).is_err());
        }
        assert_eq!(
            Presets::Own.permissions(Some("approve"), None),
            Ok(vec![Permission::FullAccess, Permission::RequireApproval])
        );
        assert!(Presets::Team.permissions(Some("approve"), None).is_err());
    }

    #[test]
    fn each_form_shows_the_presets_its_parser_takes() {
        for presets in [Presets::Own, Presets::Team] {
            let fields = presets.fields();
            for name in [
                "name=\"preset\" value=\"full\"",
                "value=\"kinds\"",
                "name=\"kinds\"",
            ] {
                assert!(fields.contains(name), "{name}");
            }
            let approve = fields.contains("value=\"approve\"");
            assert_eq!(approve, presets == Presets::Own, "{fields}");
        }
    }
}
