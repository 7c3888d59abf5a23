#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian
# packages), checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Prerequisites the end-to-end tests use: real MQTT clients, a real browser, curl.
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
    echo "==> installing test prerequisites: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "!!! cannot install ${missing[*]} (not root, no sudo): the tests that need them will say SKIPPED (or fail under CI=true)" >&2
    fi
fi

# The real npm clients of the protocols Ingot speaks (socket.io-client 2.x), pinned by
# the committed lock file.
if ! command -v npm >/dev/null 2>&1; then
    echo "==> installing Node.js and npm (for the socket.io client tests)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || true
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || true
    fi
fi
if command -v npm >/dev/null 2>&1; then
    echo "==> npm ci (test clients: crates/ingot/tests/js)"
    npm ci --prefix crates/ingot/tests/js --no-audit --no-fund --loglevel=error
elif [ "${CI:-}" = true ]; then
    echo "!!! npm is missing and could not be installed; CI=true makes that a failure" >&2
    exit 1
else
    echo "!!!!! WARNING: no npm: the socket.io client tests will say SKIPPED !!!!!" >&2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check) # fuzz/ is a workspace of its own
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# A private PostgreSQL server and a private NATS server (JetStream) for the tests that
# need them (scripts/postgres.sh and scripts/nats.sh install Debian's packages if
# missing), stopped and removed on exit, failure or Ctrl-C. An INGOT_TEST_POSTGRES_URL
# or INGOT_TEST_NATS_URL already set is used as is (tests create and drop databases named
# ingot_test_* there; NATS tests use subjects and streams of their own).
# Each server's directory, for the cleanup: one per script.
declare -A server_dirs=()
cleanup() {
    local script dir
    for script in "${!server_dirs[@]}"; do
        dir=${server_dirs[$script]}
        if [ -e "$dir/.ingot-${script%.sh}" ]; then scripts/$script stop "$dir"; else rmdir "$dir"; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# private_server SCRIPT VAR WHAT: unless VAR is set, starts a server with scripts/SCRIPT
# and exports VAR as its URL; without one, CI=true fails and otherwise a loud warning.
private_server() {
    local script=$1 var=$2 what=$3 dir url
    [ -z "${!var:-}" ] || return 0
    echo "==> starting a private $what"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test-${script%.sh}.XXXXXX")
    server_dirs[$script]=$dir
    if url=$(scripts/"$script" start "$dir"); then
        export "$var=$url"
        echo "    $url"
    elif [ "${CI:-}" = true ]; then
        echo "!!! $what could not be installed or started (see above); CI=true makes that a failure" >&2
        exit 1
    else
        echo "" >&2
        echo "!!!!! WARNING: no $what (see above): the tests that need one will say SKIPPED !!!!!" >&2
        echo "" >&2
    fi
}
private_server postgres.sh INGOT_TEST_POSTGRES_URL "PostgreSQL server"
private_server nats.sh INGOT_TEST_NATS_URL "NATS server (JetStream)"

echo "==> cargo test (services and stores on SQLite and PostgreSQL; end-to-end on SQLite)"
cargo test --workspace
# The same end-to-end tests again, with `ingot serve --store postgres://…` (a database
# per test server: crates/ingot/tests/support). Without a server they would only say
# SKIPPED, so they are not run twice then.
if [ -n "${INGOT_TEST_POSTGRES_URL:-}" ]; then
    echo "==> cargo test: the end-to-end tests on PostgreSQL"
    INGOT_TEST_STORE=postgres cargo test -p ingot --tests
fi
