//! The server-rendered pages over HTTP: forms, the CSP every page carries, CSRF fields.

use keycast_core::nostr::Url;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

use super::server::{Served, PASSWORD};

/// `application/x-www-form-urlencoded` pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://x/").expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or("").to_owned()
}

/// A page: status, body and the `Location` header. Every page (2xx and 4xx) must carry
/// the strict CSP.
pub async fn html(
    served: &Served,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<&[(&str, &str)]>,
) -> (StatusCode, String, Option<String>) {
    let mut r = served.http.request(method, served.env.url(path));
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    if let Some(pairs) = body {
        r = r
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
    }
    let response = r.send().await.expect("request");
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status.is_success() || status.is_client_error() {
        assert!(
            response
                .headers()
                .get("content-security-policy")
                .is_some_and(|v| v.to_str().unwrap_or("").starts_with("default-src 'none'")),
            "pages carry the CSP"
        );
    }
    (status, response.text().await.expect("body"), location)
}

/// The CSRF token in a page's form.
pub fn csrf(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    page[start..].split('"').next().expect("value").to_owned()
}

/// The text of `<code id="{id}">` in a page, unescaped (the URI and token of a new
/// connection).
pub fn code(page: &str, id: &str) -> String {
    let open = format!("<code id=\"{id}\">");
    let start = page
        .find(&open)
        .unwrap_or_else(|| panic!("no {id} in {page}"))
        + open.len();
    page[start..]
        .split('<')
        .next()
        .expect("text")
        .replace("&amp;", "&")
}

/// Logs in through the UI's form; the `Cookie` header to send.
pub async fn login(served: &Served, email: &str) -> String {
    let response = served
        .http
        .post(served.env.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", email), ("password", PASSWORD)]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/ui");
    let cookie = response.headers()[SET_COOKIE].to_str().expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    cookie.split(';').next().expect("pair").to_owned()
}

/// A page with the session `cookie`; asserts its status.
pub async fn get(served: &Served, path: &str, cookie: &str, status: u16) -> String {
    let (got, page, _) = html(served, Method::GET, path, Some(cookie), None).await;
    assert_eq!(got, status, "{path}: {page}");
    page
}
