//! A short run of the real binary against the debug `keycast-server` (built next to it by
//! `cargo build` or `cargo test --workspace`): both modes at a low rate for 5 s must
//! finish with no errors and print the summary. Skipped, with a message, when the
//! server binary is missing; `KEYCAST_BENCH_SERVER_BIN` names another one.

use std::path::PathBuf;
use std::process::Command;

fn server_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KEYCAST_BENCH_SERVER_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    // <target>/debug/keycast-bench → <target>/debug/keycast-server.
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_keycast-bench"));
    let server = bench.with_file_name(format!("keycast-server{}", std::env::consts::EXE_SUFFIX));
    server.is_file().then_some(server)
}

#[test]
fn a_short_run_of_both_modes_passes_and_prints_the_summary() {
    let Some(server) = server_bin() else {
        println!(
            "skipped: no keycast-server next to {} (run `cargo build -p keycast-server` first)",
            env!("CARGO_BIN_EXE_keycast-bench")
        );
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_keycast-bench"))
        .args(["--server-bin".as_ref(), server.as_os_str()])
        .args(["--mode", "both", "--rate", "10", "--seconds", "5"])
        .args([
            "--sample-every",
            "1",
            "--authorizations",
            "4",
            "--clients",
            "2",
        ])
        .output()
        .expect("run keycast-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "keycast-bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for want in [
        "| t s | http sent |",
        "| 5 |",
        "## Summary",
        "| http | 10 | 50 | 50 | 0 |",
        "| nip46 | 10 | 50 | 50 | 0 |",
        "| RSS MiB |",
        "| open fds |",
        "- errors: 0",
        "**PASS**",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}\n{stderr}");
    }
}
