#!/usr/bin/env bash
# Foo proxy benchmark (issue 4): the same Foo load, side by side on loopback, in one run:
#   (a) direct to a Foo server, (b) through `ingot proxy`, (c) through HAProxy (TCP mode).
# Then latency at half of (a)'s rate, and the proxy's RSS with ~10,000 idle connections.
# Bounded: about 2 minutes. Loopback only. Prints a Markdown report on stdout.
#
# Knobs (environment): CONNS=64 DEPTH=16 RUN_SECONDS=10 HALF_SECONDS=5 IDLE_CONNS=9900
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
RUN_SECONDS=${RUN_SECONDS:-10}
HALF_SECONDS=${HALF_SECONDS:-5}
# Each proxied connection costs the proxy two descriptors; the per-process limit here is
# 20,000, so 10,000 connections cannot fit: stay just below.
IDLE_CONNS=${IDLE_CONNS:-9900}
SERVER=127.0.0.1:18001
PROXY=127.0.0.1:18002
HAPROXY=127.0.0.1:18003
HTTP=127.0.0.1:18088

if ! command -v haproxy >/dev/null; then
    echo "installing haproxy" >&2
    apt-get update >&2 && apt-get install -y haproxy >&2
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p ingot -p proxy --bin ingot --example foo_bench >&2
BIN=$CARGO_TARGET_DIR/release
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { sed -E "s/.*\"$2\":([^,}]*).*/\1/" <<<"$1"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

"$BIN/examples/foo_bench" server --listen "$SERVER" & SERVER_PID=$!; PIDS+=("$SERVER_PID")
INGOT_LOG=warn "$BIN/ingot" proxy --listen "$PROXY" --forward "$SERVER" --http "$HTTP" \
    --recovery-path "$WORK/recovery.json" 2>"$WORK/proxy.log" & PROXY_PID=$!; PIDS+=("$PROXY_PID")
cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 9000
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend foo
    bind $HAPROXY
    default_backend foo_server
backend foo_server
    server s1 $SERVER
CFG
wait_port "$SERVER"; wait_port "$PROXY"

# One load run against $2; HAProxy only runs during its own runs so it never competes idle.
run() { # name target [load args...]
    local name=$1 target=$2; shift 2
    local mid=""
    if [ "$name" = haproxy ]; then
        haproxy -f "$WORK/haproxy.cfg" -db 2>"$WORK/haproxy.log" & mid=$!
        wait_port "$HAPROXY"
    elif [ "$name" = ingot ]; then mid=$PROXY_PID; fi
    local s0 m0=0 out; s0=$(cpu_ticks "$SERVER_PID"); [ -n "$mid" ] && m0=$(cpu_ticks "$mid")
    out=$("$BIN/examples/foo_bench" load --target "$target" --conns "$CONNS" "$@")
    local s1 m1=0; s1=$(cpu_ticks "$SERVER_PID"); [ -n "$mid" ] && m1=$(cpu_ticks "$mid")
    if [ "$name" = haproxy ]; then kill "$mid"; wait "$mid" 2>/dev/null || true; fi
    local server_cpu proxy_cpu
    server_cpu=$(awk -v t=$((s1 - s0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')
    proxy_cpu=$(awk -v t=$((m1 - m0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')
    echo "$out" | sed -E "s/}\$/,\"server_cpu_s\":$server_cpu,\"proxy_cpu_s\":$proxy_cpu}/"
}

echo "closed loop: $CONNS connections x $DEPTH pipelined, ${RUN_SECONDS}s each" >&2
DIRECT=$(run direct "$SERVER" --depth "$DEPTH" --seconds "$RUN_SECONDS"); echo "direct  $DIRECT" >&2
INGOT=$(run ingot "$PROXY" --depth "$DEPTH" --seconds "$RUN_SECONDS"); echo "ingot   $INGOT" >&2
HAP=$(run haproxy "$HAPROXY" --depth "$DEPTH" --seconds "$RUN_SECONDS"); echo "haproxy $HAP" >&2

# Half load: half of the lowest maximum, so that all three paths carry the same rate and
# none of them is overloaded.
HALF_RATE=$(awk -v a="$(field "$DIRECT" msgs_per_s)" -v b="$(field "$INGOT" msgs_per_s)" -v c="$(field "$HAP" msgs_per_s)" \
    'BEGIN {m = a; if (b < m) m = b; if (c < m) m = c; printf "%d", m / 2}')
echo "open loop at half of the lowest maximum: $HALF_RATE req/s, ${HALF_SECONDS}s each" >&2
HDIRECT=$(run direct "$SERVER" --rate "$HALF_RATE" --seconds "$HALF_SECONDS"); echo "direct  $HDIRECT" >&2
HINGOT=$(run ingot "$PROXY" --rate "$HALF_RATE" --seconds "$HALF_SECONDS"); echo "ingot   $HINGOT" >&2
HHAP=$(run haproxy "$HAPROXY" --rate "$HALF_RATE" --seconds "$HALF_SECONDS"); echo "haproxy $HHAP" >&2

echo "idle: $IDLE_CONNS connections through ingot proxy" >&2
RSS_BEFORE=$(rss_kib "$PROXY_PID")
"$BIN/examples/foo_bench" idle --target "$PROXY" --conns "$IDLE_CONNS" --seconds 8 >"$WORK/idle.out" & IDLE_PID=$!
for _ in $(seq 600); do grep -q ready "$WORK/idle.out" && break; sleep 0.1; done
sleep 1
RSS_IDLE=$(rss_kib "$PROXY_PID")
FDS_IDLE=$(ls "/proc/$PROXY_PID/fd" | wc -l)
IDLE_MSG=$(cat "$WORK/idle.out")
wait "$IDLE_PID" || true
STATS=$(curl -s "http://$HTTP/stats" || true)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a - b}'; }
row() { # label json
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(field "$2" msgs_per_s)" "$(field "$2" p50_us)" \
        "$(field "$2" p99_us)" "$(field "$2" server_cpu_s)" "$(field "$2" proxy_cpu_s)" "$(field "$2" loadgen_cpu_s)"
}
cat <<REPORT
Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr), HAProxy $(haproxy -v | head -1 | awk '{print $3}').
Command: \`bench/proxy.sh\` (CONNS=$CONNS DEPTH=$DEPTH RUN_SECONDS=$RUN_SECONDS HALF_SECONDS=$HALF_SECONDS IDLE_CONNS=$IDLE_CONNS), release build.

Max rate, closed loop ($CONNS connections, $DEPTH requests in flight each, ${RUN_SECONDS} s):

| path | req/s | p50 µs | p99 µs | server CPU s | proxy CPU s | loadgen CPU s |
|---|---|---|---|---|---|---|
$(row "(a) direct" "$DIRECT")
$(row "(b) ingot proxy" "$INGOT")
$(row "(c) haproxy" "$HAP")

Ratios: (b)/(a) = $(ratio "$(field "$INGOT" msgs_per_s)" "$(field "$DIRECT" msgs_per_s)"), (b)/(c) = $(ratio "$(field "$INGOT" msgs_per_s)" "$(field "$HAP" msgs_per_s)").

Half load, open loop at $HALF_RATE req/s (half of the lowest maximum above; each connection writes the requests due every 1 ms), ${HALF_SECONDS} s:

| path | req/s | p50 µs | p99 µs | server CPU s | proxy CPU s | loadgen CPU s |
|---|---|---|---|---|---|---|
$(row "(a) direct" "$HDIRECT")
$(row "(b) ingot proxy" "$HINGOT")
$(row "(c) haproxy" "$HHAP")

Added p99 latency at half load: ingot $(added "$(field "$HINGOT" p99_us)" "$(field "$HDIRECT" p99_us)") µs, haproxy $(added "$(field "$HHAP" p99_us)" "$(field "$HDIRECT" p99_us)") µs.

Idle connections: $IDLE_MSG; proxy RSS $RSS_BEFORE KiB before, $RSS_IDLE KiB with them open ($FDS_IDLE descriptors).
Proxy stats after the run: \`$STATS\`
REPORT
