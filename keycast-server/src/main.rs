//! `keycast-server`: see `keycast-server --help` and the crate docs.

/// mimalloc instead of the system allocator: requests allocate on the runtime threads and
/// free on the crypto pool's and back, where glibc's arenas cost 8 % of a signing request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keycast_server::cli::main()
}
