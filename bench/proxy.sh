#!/usr/bin/env bash
# Foo proxy benchmark (issue 4): the same Foo load, side by side on loopback, in one run:
#   (a) direct to a Foo server, (b) through `ingot proxy`, (c) through HAProxy (TCP mode).
# Then latency at half of (a)'s rate, and the proxy's RSS with ~10,000 idle connections.
# Bounded: about 2 minutes with the defaults. Loopback only. Prints a Markdown report on stdout.
#
# Knobs (environment): CONNS=64 DEPTH=16 RUN_SECONDS=5 HALF_SECONDS=5 ROUNDS=3 IDLE_CONNS=9900
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
RUN_SECONDS=${RUN_SECONDS:-5}
ROUNDS=${ROUNDS:-3}
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

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
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
kill -0 "$SERVER_PID" && kill -0 "$PROXY_PID" || { echo "server or proxy did not start" >&2; cat "$WORK/proxy.log" >&2; exit 1; }

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

# The paths take turns, ROUNDS times, and the report gives each figure's median over the
# rounds: a background job on this small machine then disturbs one round, not one path.
measure() { # phase load-args...
    local phase=$1; shift
    for round in $(seq "$ROUNDS"); do
        for path in direct ingot haproxy; do
            local target=$SERVER
            [ "$path" = ingot ] && target=$PROXY
            [ "$path" = haproxy ] && target=$HAPROXY
            local out; out=$(run "$path" "$target" "$@")
            echo "$phase round $round $path $out" >&2
            echo "$out" >>"$WORK/$phase-$path.jsonl"
        done
    done
}
med() { # phase path key
    sed -E "s/.*\"$3\":([^,}]*).*/\1/" "$WORK/$1-$2.jsonl" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

echo "closed loop: $CONNS connections x $DEPTH pipelined, ${RUN_SECONDS}s per run, $ROUNDS rounds" >&2
measure closed --depth "$DEPTH" --seconds "$RUN_SECONDS"

# Half load: half of the lowest maximum, so that all three paths carry the same rate and
# none of them is overloaded.
HALF_RATE=$(awk -v a="$(med closed direct msgs_per_s)" -v b="$(med closed ingot msgs_per_s)" \
    -v c="$(med closed haproxy msgs_per_s)" 'BEGIN {m = a; if (b < m) m = b; if (c < m) m = c; printf "%d", m / 2}')
echo "open loop at half of the lowest maximum: $HALF_RATE req/s, ${HALF_SECONDS}s per run" >&2
measure half --rate "$HALF_RATE" --seconds "$HALF_SECONDS"

# The cost of the extra hop alone: one connection, one request at a time, no queueing.
echo "ping-pong: 1 connection, 1 request in flight, ${HALF_SECONDS}s per run" >&2
CONNS=1 measure pingpong --depth 1 --seconds "$HALF_SECONDS"

echo "idle: $IDLE_CONNS connections through ingot proxy" >&2
RSS_BEFORE=$(rss_kib "$PROXY_PID")
: >"$WORK/idle.out"
"$BIN/examples/foo_bench" idle --target "$PROXY" --conns "$IDLE_CONNS" --seconds 8 >"$WORK/idle.out" & IDLE_PID=$!
for _ in $(seq 600); do grep -q ready "$WORK/idle.out" && break; sleep 0.1; done
sleep 1
RSS_IDLE=$(rss_kib "$PROXY_PID")
FDS_IDLE=$(ls "/proc/$PROXY_PID/fd" | wc -l)
IDLE_MSG=$(cat "$WORK/idle.out")
wait "$IDLE_PID" || true
STATS=$(curl -s "http://$HTTP/stats" || true)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { # label phase path
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(med "$2" "$3" msgs_per_s)" "$(med "$2" "$3" p50_us)" \
        "$(med "$2" "$3" p99_us)" "$(med "$2" "$3" server_cpu_s)" "$(med "$2" "$3" proxy_cpu_s)" \
        "$(med "$2" "$3" loadgen_cpu_s)"
}
HEADER='| path | req/s | p50 µs | p99 µs | server CPU s | proxy CPU s | loadgen CPU s |
|---|---|---|---|---|---|---|'
cat <<REPORT
Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr), HAProxy $(haproxy -v | head -1 | awk '{print $3}').
Command: \`bench/proxy.sh\` (CONNS=$CONNS DEPTH=$DEPTH RUN_SECONDS=$RUN_SECONDS HALF_SECONDS=$HALF_SECONDS ROUNDS=$ROUNDS IDLE_CONNS=$IDLE_CONNS), release build.
Load average before the run: $LOAD_AT_START; after: $(cut -d' ' -f1-3 /proc/loadavg) (anything above ~2 means other jobs shared the 2 cores).
Figures are medians over $ROUNDS rounds (the paths take turns in each round); one request = one REQ + one reply.

Max rate, closed loop ($CONNS connections, $DEPTH requests in flight each, ${RUN_SECONDS} s per run):

$HEADER
$(row "(a) direct" closed direct)
$(row "(b) ingot proxy" closed ingot)
$(row "(c) haproxy" closed haproxy)

Ratios: (b)/(a) = $(ratio "$(med closed ingot msgs_per_s)" "$(med closed direct msgs_per_s)"), (b)/(c) = $(ratio "$(med closed ingot msgs_per_s)" "$(med closed haproxy msgs_per_s)").

Half load, open loop at $HALF_RATE req/s (half of the lowest maximum above; each connection writes the requests due every 1 ms), ${HALF_SECONDS} s per run:

$HEADER
$(row "(a) direct" half direct)
$(row "(b) ingot proxy" half ingot)
$(row "(c) haproxy" half haproxy)

Added latency at half load (median p50 / p99 minus direct's): ingot +$(awk -v a="$(med half ingot p50_us)" -v b="$(med half direct p50_us)" 'BEGIN {printf "%.0f", a - b}') / +$(awk -v a="$(med half ingot p99_us)" -v b="$(med half direct p99_us)" 'BEGIN {printf "%.0f", a - b}') µs, haproxy +$(awk -v a="$(med half haproxy p50_us)" -v b="$(med half direct p50_us)" 'BEGIN {printf "%.0f", a - b}') / +$(awk -v a="$(med half haproxy p99_us)" -v b="$(med half direct p99_us)" 'BEGIN {printf "%.0f", a - b}') µs.

Ping-pong (1 connection, 1 request in flight, ${HALF_SECONDS} s per run), the hop's own cost:

$HEADER
$(row "(a) direct" pingpong direct)
$(row "(b) ingot proxy" pingpong ingot)
$(row "(c) haproxy" pingpong haproxy)

Idle connections: $IDLE_MSG; proxy RSS $RSS_BEFORE KiB before, $RSS_IDLE KiB with them open ($FDS_IDLE descriptors).
Proxy stats after the run: \`$STATS\`
REPORT
