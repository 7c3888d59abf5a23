#!/usr/bin/env bash
# MQTT ingest → history benchmark (issue 2). Builds the release binary, then for each
# scenario starts a fresh `ingot serve` (new temp data dir, ephemeral loopback ports),
# runs `ingot load mqtt` against it, reads the server's /metrics and stops it.
# Prints each report and a summary table (Markdown). A few minutes in all.
#
#   bench/mqtt.sh                     # every scenario, 15 s each
#   DURATION=5s bench/mqtt.sh         # shorter
#   SCENARIOS="max-1000 idle-10k" bench/mqtt.sh
#   SCENARIOS=steady-10k DURATION=600s STORES=sqlite BROKER= bench/mqtt.sh
#                                     # issue 16's 10-minute run: 10,000 devices at a fixed
#                                     # STEADY_RATE (default 17000 msg/s); its report adds
#                                     # each second's PUBACK p99 summed up
#   PERF=max-200 bench/mqtt.sh        # also perf-profile the server in that scenario
#   PERF=max-200 PERF_KEEP=/tmp/p.txt bench/mqtt.sh   # and keep perf's whole report there
#   STORES=sqlite bench/mqtt.sh       # only the embedded store (default: sqlite postgres)
#   STORES="sqlite nats nats2" SCENARIOS="max-200 max-1000" bench/mqtt.sh   # cluster (issue 10)
#   BROKER= bench/mqtt.sh             # without the Mosquitto runs
#   BEFORE=/tmp/ingot-old bench/mqtt.sh   # each SQLite scenario also with that binary
#                                     # ("before-" rows): a lever's before and after, one run
#
# With BROKER=mosquitto (the default) the max-rate scenarios also run against Mosquitto
# (Debian's, installed when missing; persistence off, anonymous, loopback) with the same
# load generator and connections (`ingot load mqtt --plain-broker`: no API, nothing to
# store, measured up to the PUBACKs), and the summary gives Ingot's end-to-end durable
# rate as a ratio of Mosquitto's (issue 16's target: ≥ 0.6 at 200 and 1,000).
#
# With postgres in STORES, the scenarios that write history run again on PostgreSQL: a
# private server (scripts/postgres.sh, fsync on) with a new database per scenario, and
# the report adds the CPU time PostgreSQL's own processes spent during the run.
# `nats` runs one node on PostgreSQL with a private NATS JetStream server as its bus
# (scripts/nats.sh); `nats2` two such nodes, the load's connections alternating between
# them; both reports add NATS's CPU time, and the load's server CPU is the nodes' sum.
#
# The load generator runs on the same machine as the server and competes with it for
# the CPUs; each report says how busy each of them was.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
SCENARIOS=${SCENARIOS:-"max-200 max-1000 max-1000-nosync rate-10k idle-10k"}
STORES=${STORES:-"sqlite postgres"}
BROKER=${BROKER-mosquitto}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=bench/lib.sh
. bench/lib.sh


WORK=$(mktemp -d -t ingot-bench.XXXXXX)
SUMMARY=$WORK/summary.md
SERVER_PID=
SERVER2_PID=
PG_DIR=
NATS_DIR=
BROKER_PID=
cleanup() {
    for pid in $SERVER_PID $SERVER2_PID $BROKER_PID; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    done
    if [ -n "$PG_DIR" ]; then scripts/postgres.sh stop "$PG_DIR" || true; fi
    if [ -n "$NATS_DIR" ]; then scripts/nats.sh stop "$NATS_DIR" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ " $STORES " == *" nats"* ]]; then
    NATS_DIR=$(mktemp -d -t ingot-bench-nats.XXXXXX)
    NATS_URL=$(scripts/nats.sh start "$NATS_DIR")
fi
if [[ " $STORES " == *" postgres "* || " $STORES " == *" nats"* ]]; then
    PG_DIR=$(mktemp -d -t ingot-bench-pg.XXXXXX)
    PG_URL=$(scripts/postgres.sh start "$PG_DIR")
    PG_DB=0
fi

# A new empty database on the private PostgreSQL server; sets DB_URL (not in a
# subshell: PG_DB must count up).
new_database() {
    PG_DB=$((PG_DB + 1))
    psql -X -q "$PG_URL" -c "CREATE DATABASE bench_$PG_DB" >&2
    DB_URL=${PG_URL%/*}/bench_$PG_DB
}

# CPU time (ms, user + system) of the PostgreSQL server's processes alive now, by pid.
pg_cpu() {
    local pm tick
    pm=$(head -1 "$PG_DIR/data/postmaster.pid")
    tick=$(getconf CLK_TCK)
    for pid in $pm $(ps --ppid "$pm" -o pid=); do
        [ -r "/proc/$pid/stat" ] && awk -v pid="$pid" -v tick="$tick" '{ sub(/.*\) /, ""); print pid, ($12 + $13) * 1000 / tick }' "/proc/$pid/stat"
    done
}

# CPU time (ms) of the NATS server.
nats_cpu() {
    awk -v tick="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) * 1000 / tick }' "/proc/$(cat "$NATS_DIR/pid")/stat"
}

# PostgreSQL's CPU between two pg_cpu snapshots (processes that started in between count whole).
pg_cpu_report() {
    awk -v secs="$3" 'NR == FNR { before[$1] = $2; next } { total += $2 - before[$1] }
        END { printf "postgresql: %.1f s CPU in its own processes (%.0f%% of one core over %s s)\n", total / 1000, total / 10 / secs, secs }' "$1" "$2"
}

# The history writer's own view (/metrics). Only sums and counts: the exporter's
# quantiles cover a recent window, not the run.
writer_metrics() {
    # /metrics is for operators: the bootstrap admin's JWT.
    local jwt
    jwt=$(curl -s -X POST "$HTTP/auth" -H 'Content-Type: application/json' \
        -d "{\"username\":\"admin\",\"passwd\":\"$PASSWORD\"}" | sed 's/.*"jwt":"\([^"]*\)".*/\1/')
    curl -s -H "Authorization: Bearer $jwt" "$HTTP/metrics" | awk '
        /^ingot_history_write_seconds_sum/ { ws = $2 }
        /^ingot_history_write_seconds_count/ { n = $2 }
        /^ingot_history_batch_size_sum/ { bs = $2 }
        /^ingot_mqtt_publishes_total/ { pubs = pubs " " $1 "=" $2 }
        END {
            if (n > 0) printf "history writer: %d transactions of %.0f readings on average, %.2f ms each (write+commit); busy %.1f s in all\n", n, bs / n, ws * 1000 / n, ws
            print "server counters:" pubs
        }'
}

# Where the server's CPU went: inclusive share of its samples for a few frames (nested
# frames overlap; the percentages are of the server's CPU time, not of wall time).
perf_summary() {
    if ! perf report -i "$1" --children --sort sym --stdio -g none --percent-limit 0.3 >"$1.txt" 2>"$1.err"; then
        echo "perf report failed: $(tail -3 "$1.err")"
        return 0
    fi
    if [ -n "${PERF_KEEP:-}" ]; then cp "$1.txt" "$PERF_KEEP" && echo "perf: the whole report is in $PERF_KEEP"; fi
    echo "perf: server CPU profile ($(sed -n 's/^# Samples: \(.*\) of event.*/\1/p' "$1.txt") samples at 499 Hz over 5 s), inclusive:"
    awk '
        BEGIN {
            n = split("store::Store::write::|Statement::execute_with_bound_parameters|Transaction::commit |pagerWalFrames|walCheckpoint|[k] do_fsync|ntex_mqtt::io::Dispatcher<P,C,U,E> as core::future|ingest::mqtt::v3::publish|bus::memory|axum::serve::handle_connection|store::Store::read::|[k] __schedule", pat, "|")
            split("history writer transaction (Store::write)|  INSERT statements|  COMMIT|    WAL frames written (pwrite)|    WAL checkpoint|    fsync|MQTT connections (ntex dispatcher, all of it)|  ingest publish (parse, bus, wait)|in-memory bus|HTTP API (the load generator polling history)|  history queries (Store::read)|kernel scheduler (context switches)", label, "|")
        }
        /^ +[0-9.]+%/ { for (i = 1; i <= n; i++) if (!(i in seen) && index($0, pat[i])) { seen[i] = $1 } }
        END { for (i = 1; i <= n; i++) if (i in seen) printf "  %6s  %s\n", seen[i], label[i] }' "$1.txt"
}

# scenario NAME DEVICES RATE(0=max|idle) [serve flags...]; STORE=postgres runs it on a
# new PostgreSQL database (NAME gets a "pg-" prefix), STORE=nats also on NATS ("nats-"),
# STORE=nats2 on two nodes sharing them ("nats2-").
scenario() {
    local name=${PREFIX:-}$1 devices=$2 rate=$3; shift 3
    local store=${STORE:-sqlite}
    [ "$store" = sqlite ] || new_database
    case $store in
        postgres) name=pg-$name; set -- "$@" --store "$DB_URL" ;;
        nats | nats2) name=$store-$name; set -- "$@" --store "$DB_URL" --bus "$NATS_URL" --bus-prefix "b$PG_DB" ;;
    esac
    local dir=$WORK/$name mode=(--rate "$rate")
    [ "$rate" = idle ] && mode=(--idle)
    echo "==> $name: $devices connections, ${rate/#0/max rate}, $DURATION; serve $*"
    local mqtt pids
    if [ "$store" = nats2 ]; then
        start_server "$dir/node2" "$@"
        SERVER2_PID=$SERVER_PID
        local mqtt2=$MQTT
        start_server "$dir" "$@"
        mqtt=$MQTT,$mqtt2 pids=$SERVER_PID,$SERVER2_PID
    else
        start_server "$dir" "$@"
        mqtt=$MQTT pids=$SERVER_PID
    fi
    if [ "$store" != sqlite ]; then pg_cpu >"$dir/pg.before"; fi
    local nats_before=0
    if [[ $store == nats* ]]; then nats_before=$(nats_cpu); fi
    local started=$SECONDS
    local perf_pid=
    if [ -n "${PERF:-}" ] && [ "$name" = "$PERF" ]; then
        # Samples the server mid-run (software clock: this VM has no hardware counters;
        # DWARF call graphs: the release build has debug info but no frame pointers).
        (sleep 6; perf record -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$dir/perf.data" -- sleep 5 >/dev/null 2>&1) &
        perf_pid=$!
    fi
    "${AFTER_BIN:-$BIN}" load mqtt --http "$HTTP" --mqtt "$mqtt" --password "$PASSWORD" --devices "$devices" \
        "${mode[@]}" --duration "$DURATION" --server-pid "$pids" --label "$name" --summary "$SUMMARY"
    [ "$rate" = idle ] || writer_metrics
    if [ "$store" != sqlite ]; then
        pg_cpu >"$dir/pg.after"
        pg_cpu_report "$dir/pg.before" "$dir/pg.after" $((SECONDS - started))
    fi
    if [[ $store == nats* ]]; then
        awk -v a="$nats_before" -v b="$(nats_cpu)" -v secs=$((SECONDS - started)) \
            'BEGIN { printf "nats-server: %.1f s CPU (%.0f%% of one core over %s s)\n", (b - a) / 1000, (b - a) / 10 / secs, secs }'
    fi
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        perf_summary "$dir/perf.data"
    fi
    stop_server
    if [ -n "$SERVER2_PID" ]; then
        kill -TERM "$SERVER2_PID"
        wait "$SERVER2_PID" || true
        SERVER2_PID=
    fi
    echo
}

if [ "$BROKER" = mosquitto ] && ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    echo "==> installing mosquitto (Debian package) to compare with"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq mosquitto >/dev/null; else sudo apt-get install -y -qq mosquitto >/dev/null; fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# broker_scenario NAME DEVICES: Mosquitto on a free loopback port, persistence off, the
# same connections and publishes as scenario NAME; the row is "mosquitto-NAME".
broker_scenario() {
    local name=mosquitto-$1 devices=$2 dir=$WORK/mosquitto-$1 port
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n' "$port" >"$dir/mosquitto.conf"
    echo "==> $name: $devices connections, max rate, $DURATION; $("$MOSQUITTO" -h 2>&1 | head -1)"
    "$MOSQUITTO" -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.err" &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$BIN" load mqtt --plain-broker --mqtt "127.0.0.1:$port" --devices "$devices" --rate 0 \
        --duration "$DURATION" --server-pid "$BROKER_PID" --label "$name" --summary "$SUMMARY"
    kill -TERM "$BROKER_PID"
    wait "$BROKER_PID" || true
    BROKER_PID=
    echo
}

# run_scenario NAME: one of the scenarios, on $STORE.
run_scenario() {
    case $1 in
        max-200) scenario max-200 200 0 ;;
        max-1000) scenario max-1000 1000 0 ;;
        max-1000-nosync) scenario max-1000-nosync 1000 0 --sync-full false ;;
        rate-10k) scenario rate-10k 1000 10000 ;;
        idle-10k) scenario idle-10k 10000 idle ;;
        steady-10k) scenario steady-10k 10000 "${STEADY_RATE:-17000}" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

# Each scenario on each store, side by side (idle connections never reach the store).
for s in $SCENARIOS; do
    if [ -n "$BROKER" ] && [[ $s == max-200 || $s == max-1000 ]]; then broker_scenario "$s" "${s#max-}"; fi
    for STORE in $STORES; do
        [ "$STORE" != sqlite ] && [ "$s" = idle-10k ] && continue
        if [ -n "${BEFORE:-}" ] && [ "$STORE" = sqlite ] && [ "$s" != idle-10k ]; then
            # Served by the BEFORE binary; the load generator stays this one.
            AFTER_BIN=$BIN BIN=$BEFORE PREFIX=before- run_scenario "$s"
        fi
        run_scenario "$s"
    done
done

echo "## Summary ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); server and load generator share them)"
echo
echo "Targets: ≥ 50,000 msg/s end to end at QoS 1; PUBACK p99 < 20 ms at 10,000 msg/s; 10,000 idle connections < 300 MB."
echo
cat "$SUMMARY"
if [ -n "$BROKER" ]; then
    echo
    echo "Ingot's end-to-end durable rate / Mosquitto's (no persistence) PUBACK rate, same connections, this run (target ≥ 0.6):"
    awk -F'|' '{ gsub(/ /, "", $2); rate[$2] = $6 } END {
        for (k in rate) if (k ~ /^mosquitto-/) { s = substr(k, 11); for (p in rate) if (p ~ ("^(before-|pg-|nats-|nats2-)?" s "$")) printf "- %s: %.0f / %.0f msg/s = %.2f\n", p, rate[p], rate[k], rate[p] / rate[k] } }' "$SUMMARY" | sort
fi
