//! Headless Chromium through playwright-core (`tests/browser`, one script per page flow).
//!
//! Needs `KEYCAST_TEST_CHROMIUM` (Debian's `/usr/bin/chromium`) and
//! `KEYCAST_TEST_BROWSER_NODE=1` with `npm ci` done in `tests/browser` (scripts/test does
//! both). Without them a test prints that it was skipped; under
//! `KEYCAST_TEST_REQUIRE_SERVICES=1` it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The npm folder and the Chromium binary, or `None` (skipped) when either is missing.
pub fn browser() -> Option<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("KEYCAST_TEST_CHROMIUM")
        .ok()
        .filter(|p| Path::new(p).exists());
    if let Some(chromium) = chromium {
        if std::env::var("KEYCAST_TEST_BROWSER_NODE").as_deref() == Ok("1")
            && dir.join("node_modules").is_dir()
        {
            return Some((dir, chromium));
        }
    }
    keycast_test_support::missing_service(
        "KEYCAST_TEST_CHROMIUM or KEYCAST_TEST_BROWSER_NODE=1 with npm-installed tests/browser is not set (install chromium, run npm ci in tests/browser)",
    )
}

/// `node <script> <args>` in `dir`, killed after two minutes.
pub fn run_node(dir: &Path, chromium: &str, script: &str, args: &[String]) -> std::process::Output {
    let child = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .env("KEYCAST_TEST_CHROMIUM", chromium)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("node output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the browser script {script} did not finish in two minutes");
        }
    }
}

/// The JSON object a script prints as its last line; panics (with its output) without
/// one, or when it reports a `failure`.
pub fn result(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
            panic!(
                "no JSON from the browser script ({e}); stdout: {stdout}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        result.get("failure").is_none(),
        "the browser failed: {result}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    result
}

/// Runs the web UI's browser `script` with `args` off the runtime and checks what every
/// such walk must show: no console or CSP error, each of `steps` seen, and every
/// screenshot a PNG file. The script's result, for the test's own checks.
pub async fn walk(
    dir: PathBuf,
    chromium: String,
    script: &'static str,
    args: Vec<String>,
    steps: &[&str],
) -> Value {
    let out = tokio::task::spawn_blocking(move || run_node(&dir, &chromium, script, &args))
        .await
        .expect("node thread");
    let result = result(&out);
    assert_eq!(
        result["errors"],
        serde_json::json!([]),
        "console or CSP errors: {result}"
    );
    let seen = result["steps"].as_array().expect("steps");
    for step in steps {
        assert!(seen.contains(&serde_json::json!(step)), "{step}: {result}");
    }
    for shot in result["screenshots"].as_array().expect("screenshots") {
        let png = std::fs::read(shot.as_str().expect("path")).expect("screenshot file");
        assert!(png.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
    result
}

/// `target/ui-screenshots/<name>`, next to the test binary's `target/<profile>/deps`.
pub fn screenshot_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir");
    let dir = target.join("ui-screenshots").join(name);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}
