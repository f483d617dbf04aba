//! `keycast-server`: see `keycast-server --help` and the crate docs.

fn main() -> std::process::ExitCode {
    keycast_server::cli::main()
}
