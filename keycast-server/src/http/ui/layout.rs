//! The frame of every `/ui` page: the OAuth pages' security headers and style, a wider
//! body for tables, and the nav bar with the logout button.

use axum::http::StatusCode;
use axum::response::Response;

use crate::http::oauth::page::{escape, styled};

/// The nav bar's pages, in order: path and name. A new page adds its line here.
const NAV: &[(&str, &str)] = &[
    ("/ui", "App sessions"),
    ("/ui/connect/new", "New bunker connection"),
    ("/ui/teams", "Teams"),
];

/// Added to the shared style: room for tables, the nav bar, the QR code.
const STYLE: &str = "body{max-width:60rem}\
nav{display:flex;gap:1rem;align-items:center;border-bottom:1px solid #ccc;padding-bottom:.5rem}\
nav a[aria-current]{font-weight:bold}nav form{margin-left:auto}nav button{margin:0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}\
td button{margin:0;padding:.2rem .8rem}code{word-break:break-all}\
td form{display:inline-block;margin:0 .3rem .2rem 0}td select{width:auto;padding:.15rem}\
fieldset{margin-top:1rem}label.choice{display:inline;margin:0 0 0 .3rem}input[type=radio]{width:auto}\
.qr svg{display:block}.revoked{color:#666}";

/// A page for a logged-in account: nav bar (`current` marked), then `body` (already
/// escaped markup). `csrf` is the session's token, for the logout button.
pub(super) fn page(
    status: StatusCode,
    title: &str,
    current: &str,
    csrf: &str,
    body: &str,
) -> Response {
    let links: String = NAV
        .iter()
        .map(|(path, name)| {
            let mark = if *path == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{path}\"{mark}>{}</a>", escape(name))
        })
        .collect();
    let nav = format!(
        "<nav>{links}<form method=\"post\" action=\"/ui/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"logout\">Log out</button></form></nav>",
        escape(csrf)
    );
    styled(
        status,
        title,
        STYLE,
        &format!("{nav}<main>{body}</main>"),
        None,
    )
}

/// An error page: what went wrong (plain text, escaped here) and a way back.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>That did not work</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p><a href=\"/ui\">Back to your app sessions</a></p>",
        escape(message)
    );
    styled(status, "Error", STYLE, &body, None)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::header;

    use super::*;

    async fn text(r: Response) -> String {
        let bytes = to_bytes(r.into_body(), 1 << 20).await.expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn the_nav_marks_the_current_page_and_carries_the_csrf_token() {
        let r = page(StatusCode::OK, "t", "/ui", "c\"srf", "<p>x</p>");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let html = text(r).await;
        assert!(
            html.contains("<a href=\"/ui\" aria-current=\"page\">App sessions</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"/ui/connect/new\">New bunker connection</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"/ui/teams\">Teams</a>"), "{html}");
        assert!(html.contains("value=\"c&quot;srf\""), "{html}");
        assert!(html.contains("<main><p>x</p></main>"), "{html}");
    }

    #[tokio::test]
    async fn errors_are_escaped_and_keep_their_status() {
        let r = error(StatusCode::BAD_REQUEST, "<b>");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let html = text(r).await;
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
    }
}
