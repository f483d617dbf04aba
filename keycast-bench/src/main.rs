//! `keycast-bench`: drives a `keycast-server`'s HTTP RPC and NIP-46 `sign_event` at a set
//! rate for a set time (an open loop) and prints, every `--sample-every` seconds, each
//! mode's sent, ok, errors, p50 and p99, and the server's RSS, open fds and CPU; then a
//! summary and a verdict. It exits 1 on any error or when RSS or fds grew in the second
//! half of the run beyond what the first half allows, 2 when it could not run.
//!
//! ```sh
//! keycast-bench --server-bin target/release/keycast-server --mode both --rate 100 \
//!     --seconds 600 --sample-every 30     # scripts/soak
//! ```

mod http_load;
mod nip46_load;
mod pacing;
mod provision;
mod report;
mod run;
mod server;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Load and soak tool for keycast-server: HTTP RPC and NIP-46 `sign_event` at a fixed
/// rate (an open loop: requests leave on schedule whether or not earlier ones were
/// answered), with latency, errors, and the server's RSS and open fds over time.
#[derive(Debug, Parser)]
#[command(name = "keycast-bench", version)]
pub struct Cli {
    /// A keycast-server binary to start on embedded defaults (SQLite, local master key,
    /// embedded relay) in a fresh temporary data directory, stopped at the end.
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    pub server_bin: Option<PathBuf>,
    /// Drive an already running server at this base URL instead (its registration must be
    /// open; a fresh account is made).
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the server's process id, so its RSS, fds and CPU can be read.
    #[arg(long, requires = "url", conflicts_with = "server_bin")]
    pub pid: Option<u32>,
    /// Requests per second, for each mode.
    #[arg(long, default_value_t = 100.0, value_parser = positive_rate)]
    pub rate: f64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// What to drive.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// Print a row every this many seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_every: u64,
    /// Authorizations to spread the load over (each a bunker and an RPC token).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub authorizations: u64,
    /// HTTP keep-alive connections, all opened before the load; a request due while all
    /// are busy waits for one (and the wait counts in its latency).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_connections: u64,
    /// NIP-46 client keys (bunker i is bound to client i % clients).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// A request without a correct answer this many seconds after it was due is an error.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Which load to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// HTTP RPC: `POST /api/nostr` with a bearer token.
    Http,
    /// NIP-46 over the server's relay.
    Nip46,
    /// Both at once, each at --rate.
    Both,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run::run(&cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_server_binary_or_a_url_is_required_and_rates_must_be_positive() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["keycast-bench"], args].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--server-bin", "s", "--url", "http://x"]).is_err());
        assert!(parse(&["--server-bin", "s", "--pid", "1"]).is_err());
        assert!(parse(&["--server-bin", "s", "--rate", "0"]).is_err());
        assert!(parse(&["--server-bin", "s", "--rate", "nan"]).is_err());
        assert!(parse(&["--server-bin", "s", "--seconds", "0"]).is_err());
        let cli = parse(&["--server-bin", "s", "--rate", "2.5", "--mode", "nip46"])
            .expect("valid arguments");
        assert_eq!((cli.rate, cli.mode, cli.seconds), (2.5, Mode::Nip46, 60));
        let cli = parse(&["--url", "http://127.0.0.1:3000", "--pid", "42"]).expect("valid");
        assert_eq!(cli.pid, Some(42));
    }
}
