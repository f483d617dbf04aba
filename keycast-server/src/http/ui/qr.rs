//! A QR code as an inline `<svg>` element, drawn here, so the page still loads nothing
//! and its CSP stays `default-src 'none'`.

use qrcode::render::svg;
use qrcode::QrCode;

/// `text` as inline SVG (at least 320 px, with the quiet zone scanners need), or `None`
/// when it is too long for a QR code.
pub(super) fn svg(text: &str, label: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(320, 320)
        .quiet_zone(true)
        .build();
    // The renderer writes a standalone document; inline SVG takes no XML declaration.
    let start = image.find("<svg ")?;
    let labelled = format!(
        "<svg role=\"img\" aria-label=\"{}\" ",
        crate::http::oauth::page::escape(label)
    );
    Some(image[start..].replacen("<svg ", &labelled, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_is_inline_and_labelled() {
        let s = svg("bunker://ab?relay=wss%3A%2F%2Fr&secret=x", "a \"code\"").expect("svg");
        assert!(
            s.starts_with("<svg role=\"img\" aria-label=\"a &quot;code&quot;\" xmlns="),
            "{s}"
        );
        assert!(s.ends_with("</svg>"), "{s}");
        assert!(!s.contains("<?xml"), "{s}");
    }

    #[test]
    fn text_too_long_for_a_qr_code_gets_none() {
        assert!(svg(&"x".repeat(8000), "l").is_none());
    }
}
