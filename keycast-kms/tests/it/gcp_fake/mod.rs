//! An in-process stand-in for Cloud KMS, Google's OAuth token endpoint and the metadata
//! server, on a bare `TcpListener` with just enough HTTP/1.1 for reqwest: one request per
//! connection, `Content-Length` bodies, every answer sent with `Connection: close`.
//!
//! Encrypt seals the plaintext with XChaCha20-Poly1305 under a per-version secret, binding
//! the AAD, and prefixes the version number, so decrypt finds the version in the ciphertext
//! the way Cloud KMS does. Checksums follow the API: request checksums are verified (and
//! reported as verified), answer checksums are computed. Switches make it misbehave.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keycast_core::aead;
use keycast_core::random_secret32;
use keycast_core::Secret32;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Issuer the fake token endpoint accepts.
pub const CLIENT_EMAIL: &str = "keycast-test@keycast-test.iam.gserviceaccount.com";
/// `kid` the fake token endpoint expects in assertion headers.
pub const PRIVATE_KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// TEST-ONLY RSA-2048 key, generated with `openssl genpkey` for these tests alone. It guards
/// nothing: the fake token endpoint is the only party that trusts its public half.
pub const TEST_PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDhlVgks/g+pu29
qqiO7NYQpK4OJfnnYvCZ/8Q4L0WxgDd/T5iODhNNAZ1jSdQ4jbshnayZKcQaebJY
ZkSUR7C98V/BShrgBPV8cJj1BBdKR3NNKu2zik5zsYKsSXIdfAu4Hq7AbVG9EMIb
itg2BUsD5eaJC3gLyl+ZZ6tYyKlJKLATLqyku/LGmN/1tpu/5WpXS2EVTpwZDFC2
J2KyFNX3epDCHbDdw0LzoOpK0REYAkfdMK4a8s0BfO0hjoFKiNnUqJ5PpYKmVZkl
V26VDzxsm8MzQmTveCVKwQdd98XdYgwBQ9R6du3QDlfQFUQVLkatff42aYEBYegx
yQ8ZuKMTAgMBAAECggEAC4vj45kMo1RTBerGzu4DdP2g5Rt/g572VsOXLRMKW7AG
5y7RTbAdv8rN3geo464pfmp+K6bOIVbKUKkHaJmUy9wffRrIbmACmrh+s8feU1B9
79y7Jv30zwoueJgXzbeMOAPmCPZvgSBq9xLvxzAVK2Fon+ok3mGg7A644AYBWDuy
z2UH6DEkjXy44mkybdQU51AkJZzFVm8lGrOUPB4ZNay1ihW/8IHRVJrTgyeMiL19
0n/Wr81fsYRPbJ27WlaCLdFXVk3Rn0npcAYOUrCvfEomp9Ke6CCJFHLJj6nke5Si
HUXP/btaoMMNzNFLuhkXi+uOuaokDuYK/DYuUDNVcQKBgQD22i976xs8vPemyIc/
CLdbbJaISwoCC7HKkOKj3JeSYUTHvBjuDtB+fHMsBed08VKFGtdtii2Nm1tLQ04B
K7EXpnSIEnGP+qKNiWVb49pyNVzFdNCd+WZoWf8BnQkbYyxo2AYkUJbpKFr/FMfr
6qaoLmMhNG4uIhq86YDF/Y+KAwKBgQDp8WMQbTt1xSdlRtId8baH2LsR0Qc1uE0q
dt+1bqD+KDUojEYCPrsR0S5EvQc+fXSJBvtogYC3fVS63fkSVeB1CfO9vYPuniab
lUS7+qi83M1JEbi7pco2+FLA/0kWqBDz8rgdtgCARvT5HkagEDb7GrQ/BJYwViGr
PmzM9DK9sQKBgBDd66yt7diCmPFedk9KSy0GCGsbpX1qSyWqLLJBmmG4H7j+Ez4A
6SIbYss5RA1rh9XsdZfYfzBT0zMbUDMoRxt0ljXN/NB3sa+2GaTjtsNi/gnH55FD
v0mWDKSRlFO4vQoU6KaGkykvRrhzNQ3bpLONJ9zW9khUsDsEQXZF0w79AoGAZhsR
Hc5PMWvHchCjDKa/ADO8El6lQvEZ3PrdURbj9YofCX+P3tL6WyBtjVrjmoavIk+F
02sSfwOYw6a2WyZYPT0GwT3CI5erSiSwR0tz8lp8zvOJKX2G8M8Zb1r8z4KzQ4Yg
jfct6M8PhNuN/7aUCKzzFr4tvxMYxuEMI7hBnUECgYBM/C03M0+TtuwRVLPKnLKg
E2uiR9BQw2F3GwG47DY5AyS/HlLRPI0VU6xSLWDvJCsOTwWhUsJDZ46+u9fNKUjd
Vu4hFPf8odXFBnsI4lRsfLozOoh4qmjewr7zjNg/tJEP25wAaYaOzIhQ/kI2d76r
F1KVCm4y0azU22nbweKxvA==
-----END PRIVATE KEY-----\n";

/// The public half of [`TEST_PRIVATE_KEY_PEM`]: modulus (base64url) and exponent 65537.
const TEST_PUBLIC_N: &str = "4ZVYJLP4PqbtvaqojuzWEKSuDiX552Lwmf_EOC9FsYA3f0-Yjg4TTQGdY0nUOI27IZ2smSnEGnmyWGZElEewvfFfwUoa4AT1fHCY9QQXSkdzTSrts4pOc7GCrElyHXwLuB6uwG1RvRDCG4rYNgVLA-XmiQt4C8pfmWerWMipSSiwEy6spLvyxpjf9babv-VqV0thFU6cGQxQtidishTV93qQwh2w3cNC86DqStERGAJH3TCuGvLNAXztIY6BSojZ1KieT6WCplWZJVdulQ88bJvDM0Jk73glSsEHXffF3WIMAUPUenbt0A5X0BVEFS5GrX3-NmmBAWHoMckPGbijEw";
const TEST_PUBLIC_E: &str = "AQAB";

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLOUDKMS_SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Ways the fake KMS can lie in its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    /// Honest answers.
    No,
    /// Encrypt answers carry a ciphertext checksum that does not match.
    WrongCiphertextCrc,
    /// Encrypt answers claim the plaintext checksum was not verified.
    UnverifiedPlaintext,
    /// Encrypt answers claim the AAD checksum was not verified.
    UnverifiedAad,
    /// Decrypt answers carry a plaintext checksum that does not match.
    WrongPlaintextCrc,
}

struct State {
    key_name: String,
    versions: HashMap<u8, Secret32>,
    primary: u8,
    live_tokens: HashSet<String>,
    issued_tokens: Vec<String>,
    expires_in: u64,
    service_account_token_requests: usize,
    metadata_token_requests: usize,
    kms_requests: usize,
    unavailable_next: usize,
    reject_all_tokens: bool,
    misbehave: Misbehave,
    refused_assertions: Vec<String>,
}

/// A running fake; the server stops when this is dropped.
pub struct Fake {
    base: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Fake {
    /// Serves `key_name` (primary version 1) on a free loopback port.
    pub async fn start(key_name: &str) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            key_name: key_name.into(),
            versions: HashMap::from([(1, random_secret32())]),
            primary: 1,
            live_tokens: HashSet::new(),
            issued_tokens: Vec::new(),
            expires_in: 3599,
            service_account_token_requests: 0,
            metadata_token_requests: 0,
            kms_requests: 0,
            unavailable_next: 0,
            reject_all_tokens: false,
            misbehave: Misbehave::No,
            refused_assertions: Vec::new(),
        }));
        let server = tokio::spawn(accept_loop(listener, state.clone(), base.clone()));
        Fake {
            base,
            state,
            server,
        }
    }

    /// Base URL for both the KMS endpoint and the metadata server overrides.
    pub fn endpoint(&self) -> String {
        self.base.clone()
    }

    /// A service-account key file whose `token_uri` is this fake.
    pub fn service_account_json(&self, client_email: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "keycast-test",
            "private_key_id": PRIVATE_KEY_ID,
            "private_key": TEST_PRIVATE_KEY_PEM,
            "client_email": client_email,
            "token_uri": format!("{}/token", self.base),
        })
        .to_string()
    }

    pub fn service_account_token_requests(&self) -> usize {
        self.lock().service_account_token_requests
    }

    pub fn metadata_token_requests(&self) -> usize {
        self.lock().metadata_token_requests
    }

    /// Encrypt and decrypt requests received, whatever the answer.
    pub fn kms_requests(&self) -> usize {
        self.lock().kms_requests
    }

    /// Every access token handed out so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued_tokens.clone()
    }

    /// Why assertions were refused, for failure messages.
    pub fn refused_assertions(&self) -> Vec<String> {
        self.lock().refused_assertions.clone()
    }

    pub fn misbehave(&self, how: Misbehave) {
        self.lock().misbehave = how;
    }

    /// The next `n` KMS requests get 503.
    pub fn unavailable_next(&self, n: usize) {
        self.lock().unavailable_next = n;
    }

    /// Forgets every issued token, as a revocation would.
    pub fn revoke_tokens(&self) {
        self.lock().live_tokens.clear();
    }

    /// Answers 401 to every KMS request, whatever the token.
    pub fn reject_all_tokens(&self, on: bool) {
        self.lock().reject_all_tokens = on;
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.lock().expires_in = secs;
    }

    /// Adds a key version and makes it primary; returns its number.
    pub fn rotate(&self) -> u32 {
        let mut s = self.lock();
        s.primary += 1;
        let primary = s.primary;
        s.versions.insert(primary, random_secret32());
        u32::from(primary)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    body: Value,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body }
}

/// A Google RPC error body.
fn rpc_error(status: u16, code: &str, message: &str) -> Answer {
    answer(
        status,
        json!({ "error": { "code": status, "message": message, "status": code } }),
    )
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, base: String) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream, state.clone(), base.clone()));
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, base: String) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let answer = route(&mut state.lock().unwrap(), &base, &request);
    let body = answer.body.to_string();
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n",
        answer.status,
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one request: head up to the blank line, then `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn route(s: &mut State, base: &str, r: &Request) -> Answer {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/token") => token_grant(s, base, r),
        ("GET", METADATA_TOKEN_PATH) => metadata_token(s, r),
        ("POST", path) if path.starts_with("/v1/") => kms(s, r),
        _ => rpc_error(404, "NOT_FOUND", "no such route"),
    }
}

/// The OAuth token endpoint: checks the JWT bearer grant and the assertion's RS256
/// signature against the test key's public half.
fn token_grant(s: &mut State, base: &str, r: &Request) -> Answer {
    s.service_account_token_requests += 1;
    let form = parse_form(&r.body);
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return answer(400, json!({ "error": "unsupported_grant_type" }));
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    match check_assertion(&assertion, &format!("{base}/token")) {
        Ok(()) => issue_token(s),
        Err(why) => {
            s.refused_assertions.push(why.clone());
            answer(
                400,
                json!({ "error": "invalid_grant", "error_description": why }),
            )
        }
    }
}

fn check_assertion(assertion: &str, audience: &str) -> Result<(), String> {
    let key = DecodingKey::from_rsa_components(TEST_PUBLIC_N, TEST_PUBLIC_E)
        .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| format!("assertion rejected: {e}"))?;
    if data.header.kid.as_deref() != Some(PRIVATE_KEY_ID) {
        return Err("assertion header lacks the key id".into());
    }
    if data.claims["scope"] != CLOUDKMS_SCOPE {
        return Err(format!("unexpected scope {}", data.claims["scope"]));
    }
    let lifetime = data.claims["exp"].as_u64().unwrap_or(0) as i64
        - data.claims["iat"].as_u64().unwrap_or(0) as i64;
    if !(1..=3600).contains(&lifetime) {
        return Err(format!("assertion lifetime {lifetime} s"));
    }
    Ok(())
}

/// The metadata server refuses requests without `Metadata-Flavor: Google`.
fn metadata_token(s: &mut State, r: &Request) -> Answer {
    s.metadata_token_requests += 1;
    if r.headers.get("metadata-flavor").map(String::as_str) != Some("Google") {
        return answer(403, json!("missing Metadata-Flavor: Google"));
    }
    issue_token(s)
}

fn issue_token(s: &mut State) -> Answer {
    let token = format!("ya29.fake-{}", hex(&random_secret32()[..12]));
    s.live_tokens.insert(token.clone());
    s.issued_tokens.push(token.clone());
    answer(
        200,
        json!({ "access_token": token, "expires_in": s.expires_in, "token_type": "Bearer" }),
    )
}

fn kms(s: &mut State, r: &Request) -> Answer {
    s.kms_requests += 1;
    let token = r
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "));
    if s.reject_all_tokens || !token.is_some_and(|t| s.live_tokens.contains(t)) {
        return rpc_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if s.unavailable_next > 0 {
        s.unavailable_next -= 1;
        return rpc_error(503, "UNAVAILABLE", "The service is currently unavailable.");
    }
    let Some((name, method)) = r.path.strip_prefix("/v1/").and_then(|p| p.rsplit_once(':')) else {
        return rpc_error(404, "NOT_FOUND", "bad path");
    };
    if name != s.key_name {
        return rpc_error(404, "NOT_FOUND", &format!("CryptoKey {name} not found."));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return rpc_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    match method {
        "encrypt" => encrypt(s, &body),
        "decrypt" => decrypt(s, &body),
        _ => rpc_error(404, "NOT_FOUND", "no such method"),
    }
}

/// A bytes field and whether its checksum field was present. A wrong checksum is an error.
fn field(body: &Value, name: &str, crc_name: &str) -> Result<(Vec<u8>, bool), Answer> {
    let bytes = match body.get(name).and_then(Value::as_str) {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|_| rpc_error(400, "INVALID_ARGUMENT", "bad base64"))?,
        None => Vec::new(),
    };
    match body.get(crc_name).and_then(Value::as_str) {
        None => Ok((bytes, false)),
        Some(crc) if crc == crc32c::crc32c(&bytes).to_string() => Ok((bytes, true)),
        Some(_) => Err(rpc_error(
            400,
            "INVALID_ARGUMENT",
            &format!("The checksum in field {crc_name} did not match the data in field {name}."),
        )),
    }
}

fn encrypt(s: &State, body: &Value) -> Answer {
    let (plaintext, verified_plaintext) = match field(body, "plaintext", "plaintextCrc32c") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let (aad, verified_aad) = match field(
        body,
        "additionalAuthenticatedData",
        "additionalAuthenticatedDataCrc32c",
    ) {
        Ok(v) => v,
        Err(a) => return a,
    };
    let key = &s.versions[&s.primary];
    let mut ciphertext = vec![s.primary];
    ciphertext.extend(aead::seal_blob(key, &aad, &plaintext).unwrap());
    let mut crc = crc32c::crc32c(&ciphertext);
    if s.misbehave == Misbehave::WrongCiphertextCrc {
        crc ^= 1;
    }
    answer(
        200,
        json!({
            "name": format!("{}/cryptoKeyVersions/{}", s.key_name, s.primary),
            "ciphertext": STANDARD.encode(&ciphertext),
            "ciphertextCrc32c": crc.to_string(),
            "verifiedPlaintextCrc32c": verified_plaintext && s.misbehave != Misbehave::UnverifiedPlaintext,
            "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad && s.misbehave != Misbehave::UnverifiedAad,
            "protectionLevel": "SOFTWARE",
        }),
    )
}

fn decrypt(s: &State, body: &Value) -> Answer {
    let (ciphertext, _) = match field(body, "ciphertext", "ciphertextCrc32c") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let (aad, _) = match field(
        body,
        "additionalAuthenticatedData",
        "additionalAuthenticatedDataCrc32c",
    ) {
        Ok(v) => v,
        Err(a) => return a,
    };
    let invalid = || {
        rpc_error(
            400,
            "INVALID_ARGUMENT",
            "Decryption failed: the ciphertext is invalid.",
        )
    };
    let Some((version, sealed)) = ciphertext.split_first() else {
        return invalid();
    };
    let Some(key) = s.versions.get(version) else {
        return invalid();
    };
    let Ok(plaintext) = aead::open_blob(key, &aad, sealed) else {
        return invalid();
    };
    let mut crc = crc32c::crc32c(&plaintext);
    if s.misbehave == Misbehave::WrongPlaintextCrc {
        crc ^= 1;
    }
    answer(
        200,
        json!({
            "plaintext": STANDARD.encode(&plaintext[..]),
            "plaintextCrc32c": crc.to_string(),
            "usedPrimary": *version == s.primary,
            "protectionLevel": "SOFTWARE",
        }),
    )
}

/// `application/x-www-form-urlencoded` pairs.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("3F");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
