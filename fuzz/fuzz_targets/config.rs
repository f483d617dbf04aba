#![no_main]
//! Server settings: `toml 0xFF var 0xFF var …`, where each var is a byte choosing a name
//! from `NAMES` followed by its value (see `keycast_server::config::fuzz_load`).

const NAMES: &[&str] = &[
    "KEYCAST_LISTEN",
    "KEYCAST_DATA_DIR",
    "KEYCAST_RELAYS",
    "KEYCAST_EMBEDDED_RELAY_LISTEN",
    "KEYCAST_DATABASE_URL",
    "DATABASE_URL",
    "KEYCAST_REDIS_URL",
    "REDIS_URL",
    "KEYCAST_NODE_ID",
    "KEYCAST_CLUSTER_PREFIX",
    "KEYCAST_CLUSTER_TTL_MS",
    "KEYCAST_CHANGE_POLL_MS",
    "KEYCAST_KMS",
    "KEYCAST_MASTER_KEY_FILE",
    "KEYCAST_LOG_FORMAT",
    "KEYCAST_PUBLIC_URL",
    "KEYCAST_CORS_ORIGINS",
    "KEYCAST_MAX_BODY_BYTES",
    "KEYCAST_REGISTRATION_OPEN",
    "KEYCAST_OAUTH_CLIENTS",
    "XDG_DATA_HOME",
    "HOME",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    // Not amplified: a 2 MiB TOML file takes a second to parse and finds nothing more.
    let toml = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let env: Vec<(String, String)> = parts
        .filter_map(|p| {
            let (name, value) = p.split_first()?;
            let name = NAMES[usize::from(*name) % NAMES.len()];
            Some((name.to_owned(), String::from_utf8_lossy(value).into_owned()))
        })
        .collect();
    let _ = keycast_server::config::fuzz_load(&toml, &env);
});
