//! Entry points for the cargo-fuzz targets in `fuzz/`. Not a public API.

use crate::model::request::EventTemplate;

/// Parses arbitrary bytes as an event template; must never panic.
pub fn event_template(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = EventTemplate::from_json(s);
    }
}
