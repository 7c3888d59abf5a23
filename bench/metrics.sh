#!/usr/bin/env bash
# POST /metrics over TLS benchmark (issue 3). Builds the release binary, starts a fresh
# `ingot serve`, creates a metrics token, then in one run, side by side:
#   1. a bare handler (GET /ping) on the same TLS listener, 64 keep-alive connections;
#   2. POST /metrics, every login a new seat (16 accounts, each request a user not seen
#      before), 64 connections: the seat writer and the history writer both commit;
#   3. POST /metrics, the same users logging in again (fakeiot's steady state: a device
#      reports the same users over and over), 64 connections: only the history row;
#   4. POST /metrics at half of the throughput measured in 3 (latency at half load).
# Each line printed is a JSON report from `ingot load fakeiot bench`.
#
#   bench/metrics.sh                 # 10 s per phase
#   DURATION=5s bench/metrics.sh
#   SERVE_FLAGS="--sync-full false" bench/metrics.sh   # without fsync per commit
#
# The load generator shares the 2 cores with the server: compare the ratio, not only
# the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p ingot
BIN="$CARGO_TARGET_DIR/release/ingot"

WORK=$(mktemp -d -t ingot-metrics-bench.XXXXXX)
INGOT_ADMIN_PASSWORD=$PASSWORD INGOT_LOG=warn "$BIN" serve --data-dir "$WORK/data" \
    --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --https 127.0.0.1:0 --mqtts 127.0.0.1:0 --metrics-rate-per-token 0 ${SERVE_FLAGS:-} > "$WORK/out" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q "HTTPS listening" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
HTTPS=$(sed -n 's/^ingot: HTTPS listening on \(https:\/\/[^ ]*\).*/\1/p' "$WORK/out")
CA="$WORK/data/tls/ca.pem"
JWT=$(curl -s --cacert "$CA" -X POST "$HTTPS/auth" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"passwd\":\"$PASSWORD\"}" | sed 's/.*"jwt":"\([^"]*\)".*/\1/')
TOKEN=$(curl -s --cacert "$CA" -X POST "$HTTPS/auth/tokens" -H "Authorization: Bearer $JWT" \
    -H 'Content-Type: application/json' -d '{"name":"bench","scopes":["metrics"]}' | sed 's/.*"token":"\([^"]*\)".*/\1/')

bench() { "$BIN" load fakeiot --token "$TOKEN" --url "$HTTPS" --ca-cert "$CA" bench --connections 64 --duration "$DURATION" "$@" 2>/dev/null; }

echo "server: $HTTPS (pid $SERVER), $(nproc) cores; 64 keep-alive HTTP/1.1 connections over TLS, $DURATION per phase"
BARE=$(bench --path /ping); echo "bare handler:   $BARE"
NEW=$(bench --path /metrics --users 1000000); echo "new seats:      $NEW"
# Phase 2 logged in users u<conn>-0 … u<conn>-N of every connection; 300 of each are repeats now.
FULL=$(bench --path /metrics --users 300); echo "repeat logins:  $FULL"
PEAK=$(echo "$FULL" | sed 's/.*"req_per_s":\([0-9.]*\).*/\1/')
HALF=$(awk "BEGIN { printf \"%d\", $PEAK / 2 }")
HALFRUN=$(bench --path /metrics --users 300 --rate "$HALF"); echo "half load:      $HALFRUN"
rate() { echo "$1" | sed 's/.*"req_per_s":\([0-9.]*\).*/\1/'; }
awk -v b="$(rate "$BARE")" -v n="$(rate "$NEW")" -v m="$PEAK" \
    'BEGIN { printf "ratio POST /metrics / bare handler: %.2f repeat logins, %.2f new seats\n", m / b, n / b }'
echo "server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print $2, $3}')"
