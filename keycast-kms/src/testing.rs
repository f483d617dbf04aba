//! Provisioning helpers for tests and benchmarks against the local emulators (feature
//! `testing`): a fresh moto KMS key, a fresh OpenBao transit key. They panic on failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// A new symmetric key, created through moto's KMS API as an operator would.
/// Returns `(key id, key ARN)`.
#[cfg(feature = "aws")]
pub async fn moto_create_key(endpoint: &str) -> (String, String) {
    use crate::aws::{sign, AwsCredentials, UnsignedRequest};
    let url = reqwest::Url::parse(endpoint).expect("endpoint URL");
    let body = br#"{"Description":"keycast test key"}"#;
    let request = UnsignedRequest {
        method: "POST",
        url: url.as_str(),
        headers: &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.CreateKey"),
        ],
        body,
    };
    let credentials = AwsCredentials::new("test", "test", None);
    let headers = sign(
        &request,
        &credentials,
        "us-east-1",
        "kms",
        std::time::SystemTime::now(),
    )
    .expect("sign");
    let response = reqwest::Client::new()
        .post(url)
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await
        .expect("CreateKey reaches moto");
    let status = response.status();
    let text = response.text().await.expect("CreateKey body");
    assert!(status.is_success(), "CreateKey: HTTP {status}: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("CreateKey JSON");
    let field = |name: &str| {
        json["KeyMetadata"][name]
            .as_str()
            .unwrap_or_else(|| panic!("CreateKey answer without {name}: {text}"))
            .to_owned()
    };
    (field("KeyId"), field("Arn"))
}

/// Mounts transit at `transit` unless it is mounted already, then creates a fresh
/// randomly named key and returns its name.
#[cfg(feature = "vault")]
pub async fn bao_transit_key(addr: &str, token: &str) -> String {
    use rand::Rng;
    let client = reqwest::Client::new();
    let post = |path: String| {
        client
            .post(format!("{}/v1/{path}", addr.trim_end_matches('/')))
            .header("X-Vault-Token", token)
    };
    let r = post("sys/mounts/transit".into())
        .json(&serde_json::json!({"type": "transit"}))
        .send()
        .await
        .expect("vault reachable");
    let (status, body) = (r.status(), r.text().await.unwrap_or_default());
    assert!(
        status.is_success() || body.contains("already in use"),
        "enabling transit: HTTP {status}: {body}"
    );
    let name = format!("keycast-test-{:016x}", rand::thread_rng().gen::<u64>());
    let r = post(format!("transit/keys/{name}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("vault reachable");
    let status = r.status();
    assert!(
        status.is_success(),
        "creating key: HTTP {status}: {}",
        r.text().await.unwrap_or_default()
    );
    name
}
