//! A private `moto_server` (the binary in `KEYCAST_TEST_MOTO_BIN`) as the AWS KMS API,
//! which a test may pause (`SIGSTOP`: it keeps its keys, unlike a restart) and resume.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keycast_test_support::{require_service, spawn_on_free_port};

pub struct PrivateMoto {
    port: u16,
    child: Child,
}

impl PrivateMoto {
    /// Starts it and waits until it accepts connections; `None` (skipped) when
    /// `KEYCAST_TEST_MOTO_BIN` is unset outside CI.
    pub fn start() -> Option<Self> {
        let binary = require_service("KEYCAST_TEST_MOTO_BIN")?;
        let (port, child) = spawn_on_free_port("moto_server", Duration::from_secs(30), |port| {
            Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server")
        });
        Some(Self { port, child })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a symmetric KMS key and returns its id. moto checks no signature, only the
    /// credential scope (which names the service and region).
    pub async fn create_key(&self) -> String {
        let response = reqwest::Client::new()
            .post(self.endpoint())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "TrentService.CreateKey")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kms/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .body(r#"{"Description":"keycast fault test"}"#)
            .send()
            .await
            .expect("CreateKey reaches moto");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("CreateKey JSON");
        assert!(status.is_success(), "CreateKey: {status}: {body}");
        body["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("key id")
            .to_owned()
    }

    /// `SIGSTOP`: connections are still accepted by the kernel, nothing is answered.
    pub fn pause(&self) {
        super::signal(self.child.id(), "STOP");
    }

    /// `SIGCONT`.
    pub fn resume(&self) {
        super::signal(self.child.id(), "CONT");
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
