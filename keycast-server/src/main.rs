//! `keycast-server`: not yet a server. See the crate docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "keycast-server: the HTTP and NIP-46 service is not built yet.\n\
         This workspace currently provides the custody engine library (keycast-core);\n\
         try `cargo run -p example-sign-in-memory`."
    );
    ExitCode::from(2)
}
