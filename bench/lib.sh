# Shared by the benchmark scripts (sourced): the release build, the descriptor limit,
# starting and stopping `ingot serve`. Expects CARGO_TARGET_DIR and PASSWORD (the
# bootstrap admin's); sets BIN.

cargo build --release -p ingot
BIN="$CARGO_TARGET_DIR/release/ingot"
# 10,000 connections need 10,000 descriptors in the server and as many in the load
# generator (each process has its own limit; the hard limit here is 20,000).
ulimit -n "$(( $(ulimit -Hn) < 19000 ? $(ulimit -Hn) : 19000 ))"

# start_server DIR [serve flags...]: sets SERVER_PID, HTTP, MQTT, MQTTS.
start_server() {
    local dir=$1; shift
    mkdir -p "$dir/data"
    INGOT_ADMIN_PASSWORD=$PASSWORD INGOT_LOG=warn "$BIN" serve --data-dir "$dir/data" \
        --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --https 127.0.0.1:0 --mqtts 127.0.0.1:0 "$@" >"$dir/server.out" 2>"$dir/server.err" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        grep -q '^ingot: HTTP API listening on ' "$dir/server.out" && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/server.err" >&2; exit 1; }
        sleep 0.1
    done
    HTTP=$(sed -n 's/^ingot: HTTP API listening on //p' "$dir/server.out")
    MQTT=$(sed -n 's/^ingot: MQTT listening on //p' "$dir/server.out")
    MQTTS=$(sed -n 's/^ingot: MQTTS (mutual TLS) listening on //p' "$dir/server.out")
    [ -n "$HTTP" ] && [ -n "$MQTT" ] || { echo "ingot serve did not start" >&2; exit 1; }
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

# bench_work NAME: a temporary directory in WORK, removed at exit, with the server
# started by start_server (if it still runs).
bench_work() {
    WORK=$(mktemp -d -t "ingot-bench-$1.XXXXXX")
    SERVER_PID=
    trap 'if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi; rm -rf "$WORK"' EXIT
}
