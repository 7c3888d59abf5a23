#!/usr/bin/env bash
# Flows beside ingest (issue 13): 1,000 MQTT devices publish as fast as acknowledged
# (QoS 1, `ingot load mqtt`) on a fresh `ingot serve` (SQLite, in-process bus) with 0, 1
# and 20 copies of chapter 9.2's kitchen flow (event template in → switch → change ×2 →
# multi device out) enabled on the devices' template. Reports, side by side: the ingest
# rate devices saw, the flow runs per second, the readings the flows wrote (each output
# is a reading of the alarm device, so it is ingest too), readings dropped for flows,
# and how long the flows took to catch up after the devices stopped.
#
#   bench/flows.sh                      # 15 s per scenario
#   DURATION=5s FLOWS="0 20" bench/flows.sh
#   WAIT=600 bench/flows.sh             # wait up to 10 min for the flows to catch up (300 s)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
FLOWS=${FLOWS:-"0 1 20"}
DEVICES=${DEVICES:-1000}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_work flows
SUMMARY=$WORK/summary.md
ROWS=$WORK/rows.md

metric() { curl -s "$HTTP/metrics" -H "Authorization: Bearer $JWT" | awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'; }
api() { curl -s -X "$1" "$HTTP$2" -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' ${3:+-d "$3"}; }

for n in $FLOWS; do
    echo "==> $n kitchen flow(s), $DEVICES devices, $DURATION"
    start_server "$WORK/flows-$n" --sync-full false
    JWT=$(curl -s -X POST "$HTTP/auth" -H 'Content-Type: application/json' \
        -d "{\"username\": \"admin\", \"passwd\": \"$PASSWORD\"}" | sed -n 's/.*"jwt":"\([^"]*\)".*/\1/p')
    # The alarm's template is 1; the load generator's (its thermometers) will be 2.
    api POST /template '{"label": "Alarm", "attrs": [{"label": "message", "type": "dynamic", "value_type": "string"},
        {"label": "severity", "type": "dynamic", "value_type": "integer"}]}' >/dev/null
    ALARM=$(api POST /device '{"label": "alarm", "templates": ["1"]}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    for i in $(seq "$n"); do
        flow=$(sed -e 's/\$TEMPLATE/2/' -e "s/\\\$ALARM/$ALARM/" crates/flows/testdata/kitchen.json)
        api POST /flows/v1/flow "{\"name\": \"kitchen $i\", \"flow\": $flow}" | grep -q '"message":"ok"' || { echo "flow $i refused" >&2; exit 1; }
    done
    "$BIN" load mqtt --http "$HTTP" --mqtt "$MQTT" --password "$PASSWORD" --devices "$DEVICES" \
        --rate 0 --duration "$DURATION" --server-pid "$SERVER_PID" --label "flows-$n" --summary "$SUMMARY"
    stopped=$(date +%s.%N)
    # Wait for the flows to drain their backlog (at most WAIT seconds).
    deadline=$(( $(date +%s) + ${WAIT:-300} ))
    while [ "$(metric ingot_flow_backlog)" != 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 0.2
    done
    caught_up=$(awk -v a="$stopped" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    waiting=$(metric ingot_flow_backlog)
    [ "$waiting" = 0 ] || caught_up="not in $caught_up (still $waiting readings waiting), so"
    runs=$(metric ingot_flow_runs_total) outputs=$(metric ingot_flow_outputs_total)
    dropped=$(metric ingot_flow_readings_dropped_total) errors=$(metric ingot_flow_node_errors_total)
    acked=$(metric 'ingot_mqtt_publishes_total{protocol="3.1.1"}')
    secs=${DURATION%s}
    echo "flows: $runs runs, $outputs outputs, $dropped readings dropped for flows, $errors node errors; caught up ${caught_up} s after the devices stopped"
    awk -v n="$n" -v runs="$runs" -v outs="$outputs" -v dropped="$dropped" -v secs="$secs" -v cu="$caught_up" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.0f | %s | %s s |\n", n, runs / secs, outs / secs, outs, dropped, cu }' >>"$ROWS"
    stop_server
    echo
done

echo "## Summary ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); server and load generator share them)"
echo
cat "$SUMMARY"
echo
echo "| kitchen flows | flow runs/s (over the load's duration) | flow outputs/s | outputs | readings dropped for flows | flows caught up after the devices stopped |"
echo "|---|---|---|---|---|---|"
cat "$ROWS"
