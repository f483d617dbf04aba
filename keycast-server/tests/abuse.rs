//! The abuse-resistance suite (issue 18): what an outsider or a fresh account can try
//! against one instance, each attack bounded in count and time and aimed at 127.0.0.1
//! only. Every case asserts that the attacker is limited and that others keep being
//! served. `docs/SECURITY.md` maps each property to its case here.

mod common;

// A crate root finds `mod x;` beside itself; the cases live under tests/abuse/.
#[path = "abuse/accounts.rs"]
mod accounts;
