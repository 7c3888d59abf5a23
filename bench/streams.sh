#!/usr/bin/env bash
# Real-time fan-out benchmark (issue 11). Builds the release binary, then per scenario
# starts a fresh `ingot serve` (SQLite, in-process bus, loopback), runs `ingot load
# streams` against it and stops it. Prints each report and a summary table (Markdown).
#
#   bench/streams.sh                       # every scenario, 15 s each
#   DURATION=5s SCENARIOS="ws-1k" bench/streams.sh
#
# Scenarios (one device publishing QoS 1 over MQTT at a fixed rate):
#   ws-1k     1,000 kafka-ws subscribers, 100 readings/s (100,000 deliveries/s)
#   ws-10k   10,000 kafka-ws subscribers, 10 readings/s  (100,000 deliveries/s)
#   sse-1k    1,000 SSE subscribers of the device, 100 readings/s
#   ingest    `ingot load mqtt` (200 devices, as fast as acknowledged) alone, then with
#             1,000 held kafka-ws subscribers that select one other device with a
#             `where` filter (each reading is tested against 1,000 filters), then with
#             1,000 held SSE subscribers of one other device (indexed by device)
#
# The load generator shares the machine's 2 cores with the server; the figures are for
# this machine, side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
SCENARIOS=${SCENARIOS:-"ws-1k ws-10k sse-1k ingest"}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=bench/lib.sh
. bench/lib.sh


WORK=$(mktemp -d -t ingot-bench-streams.XXXXXX)
SUMMARY=$WORK/summary.md
INGEST=$WORK/ingest.md
SERVER_PID=
HOLD_PID=
cleanup() {
    if [ -n "$HOLD_PID" ] && kill -0 "$HOLD_PID" 2>/dev/null; then kill "$HOLD_PID" || true; fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Streams beyond the defaults (32 per user, 10,000 per node): the load is one user.
LIMITS=(--max-streams 15000 --max-streams-per-user 15000)

# fanout NAME SUBSCRIBERS RATE TRANSPORT
fanout() {
    local name=$1 subs=$2 rate=$3 transport=$4
    echo "==> $name: $subs $transport subscribers, one device at $rate readings/s, $DURATION"
    start_server "$WORK/$name" "${LIMITS[@]}"
    "$BIN" load streams --http "$HTTP" --mqtt "$MQTT" --password "$PASSWORD" --subscribers "$subs" \
        --rate "$rate" --transport "$transport" --duration "$DURATION" --server-pid "$SERVER_PID" \
        --label "$name" --summary "$SUMMARY"
    stop_server
}

# ingest_with NAME [streams flags...]: the MQTT ingest load, beside held streams if flags are given.
ingest_with() {
    local name=$1; shift
    echo "==> $name"
    start_server "$WORK/$name" "${LIMITS[@]}"
    if [ $# -gt 0 ]; then
        "$BIN" load streams --http "$HTTP" --mqtt "$MQTT" --password "$PASSWORD" --rate 0 \
            --duration 600s --server-pid "$SERVER_PID" --label "$name-streams" "$@" >"$WORK/$name.hold" 2>&1 &
        HOLD_PID=$!
        # Until every stream is open.
        for _ in $(seq 600); do grep -q 'streams open' "$WORK/$name.hold" && break; sleep 0.1; done
        grep 'streams open' "$WORK/$name.hold"
    fi
    "$BIN" load mqtt --http "$HTTP" --mqtt "$MQTT" --password "$PASSWORD" --devices 200 --rate 0 \
        --duration "$DURATION" --server-pid "$SERVER_PID" --label "$name" --summary "$INGEST"
    if [ -n "$HOLD_PID" ]; then kill "$HOLD_PID" || true; wait "$HOLD_PID" 2>/dev/null || true; HOLD_PID=; fi
    stop_server
}

for s in $SCENARIOS; do
    case $s in
        ws-1k) fanout ws-1k 1000 100 ws ;;
        ws-10k) fanout ws-10k 10000 10 ws ;;
        sse-1k) fanout sse-1k 1000 100 sse ;;
        ingest)
            ingest_with ingest-alone
            ingest_with ingest-1k-ws-filtered --subscribers 1000 --device-filter
            ingest_with ingest-1k-sse-device --subscribers 1000 --transport sse
            ;;
        *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done

echo
if [ -s "$SUMMARY" ]; then
    echo "| scenario | subscribers | transport | readings/s | delivered/expected | deliveries/s | publish→delivery ms p50 / p99 / max | server RSS per subscriber | server CPU |"
    echo "|---|---|---|---|---|---|---|---|---|"
    cat "$SUMMARY"
fi
if [ -s "$INGEST" ]; then
    echo
    cat "$INGEST"
fi
