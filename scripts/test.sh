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
# A private PostgreSQL server and a private NATS server (JetStream) for the tests that
# need them (scripts/postgres.sh and scripts/nats.sh install Debian's packages if
# missing), stopped and removed on exit, failure or Ctrl-C. An INGOT_TEST_POSTGRES_URL
# or INGOT_TEST_NATS_URL already set is used as is (tests create and drop databases named
# ingot_test_* there; NATS tests use subjects and streams of their own).
pg_dir= nats_dir=
cleanup() {
    if [ -n "$pg_dir" ]; then
        if [ -e "$pg_dir/.ingot-postgres" ]; then scripts/postgres.sh stop "$pg_dir"; else rmdir "$pg_dir"; fi
    fi
    if [ -n "$nats_dir" ]; then
        if [ -e "$nats_dir/.ingot-nats" ]; then scripts/nats.sh stop "$nats_dir"; else rmdir "$nats_dir"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "${INGOT_TEST_POSTGRES_URL:-}" ]; then
    echo "==> starting a private PostgreSQL server"
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test-pg.XXXXXX")
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
# The same for NATS with JetStream (scripts/nats.sh installs Debian's nats-server).
if [ -z "${INGOT_TEST_NATS_URL:-}" ]; then
    echo "==> starting a private NATS server (JetStream)"
    nats_dir=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test-nats.XXXXXX")
    if nats_url=$(scripts/nats.sh start "$nats_dir"); then
        export INGOT_TEST_NATS_URL=$nats_url
        echo "    $INGOT_TEST_NATS_URL"
    elif [ "${CI:-}" = true ]; then
        echo "!!! nats-server could not be installed or started (see above); CI=true makes that a failure" >&2
        exit 1
    else
        echo "" >&2
        echo "!!!!! WARNING: no NATS server (see above): the tests that need one will say SKIPPED !!!!!" >&2
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
