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

echo "==> cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check) # fuzz/ is a workspace of its own
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# A private PostgreSQL server for the tests that need one (scripts/postgres.sh installs
# Debian's package if missing), stopped and removed on exit, failure or Ctrl-C. An
# INGOT_TEST_POSTGRES_URL already set is used as is (tests create and drop databases
# named ingot_test_* there).
if [ -z "${INGOT_TEST_POSTGRES_URL:-}" ]; then
    echo "==> starting a private PostgreSQL server"
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test-pg.XXXXXX")
    trap 'if [ -e "$pg_dir/.ingot-postgres" ]; then scripts/postgres.sh stop "$pg_dir"; else rmdir "$pg_dir"; fi' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if pg_url=$(scripts/postgres.sh start "$pg_dir"); then
        export INGOT_TEST_POSTGRES_URL=$pg_url
        echo "    $INGOT_TEST_POSTGRES_URL"
    elif [ "${CI:-}" = true ]; then
        echo "!!! PostgreSQL could not be installed or started (see above); CI=true makes that a failure" >&2
        exit 1
    else
        echo "" >&2
        echo "!!!!! WARNING: no PostgreSQL server (see above): the tests that need one will say SKIPPED !!!!!" >&2
        echo "" >&2
    fi
fi

echo "==> cargo test (services and stores on SQLite and PostgreSQL; end-to-end on SQLite)"
cargo test --workspace
# The same end-to-end tests again, with `ingot serve --store postgres://…` (a database
# per test server: crates/ingot/tests/support). Without a server they would only say
# SKIPPED, so they are not run twice then.
if [ -n "${INGOT_TEST_POSTGRES_URL:-}" ]; then
    echo "==> cargo test: the end-to-end tests on PostgreSQL"
    INGOT_TEST_STORE=postgres cargo test -p ingot --tests
fi
