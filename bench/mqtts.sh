#!/usr/bin/env bash
# MQTT over mutual TLS beside plain MQTT (issue 12): connection set-up rate (full TLS
# handshakes with a client certificate, then CONNECT and its registry check) and memory
# per idle connection, with N connections held. Each scenario starts a fresh `ingot
# serve` (SQLite, loopback), provisions N devices (a secret each, or a certificate each
# through POST /x509/v1/certificates) and runs `ingot load mqtt --idle` against it.
#
#   bench/mqtts.sh                         # 10,000 connections per scenario
#   DEVICES=2000 bench/mqtts.sh
#
# Scenarios: plain (1883, secrets), tls-ec (8883, a P-256 key per device), tls-rsa (8883,
# one RSA-2048 key made by openssl signing every device's CSR: the client side of each
# handshake then signs with RSA-2048). The load generator shares the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-10000}
HOLD=${HOLD:-10s}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_work mqtts
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rsa.pem" 2>/dev/null

ROWS=$WORK/rows.md
for s in plain tls-ec tls-rsa; do
    echo "==> $s: $DEVICES idle connections"
    start_server "$WORK/$s" --sync-full false --max-mqtt-connections 20000
    tls=()
    addr=$MQTT
    case $s in
        tls-ec) tls=(--tls-ca "$WORK/$s/data/tls/ca.pem") addr=$MQTTS ;;
        tls-rsa) tls=(--tls-ca "$WORK/$s/data/tls/ca.pem" --tls-key-pem "$WORK/rsa.pem") addr=$MQTTS ;;
    esac
    "$BIN" load mqtt --http "$HTTP" --mqtt "$addr" --password "$PASSWORD" --devices "$DEVICES" --idle \
        --duration "$HOLD" --server-pid "$SERVER_PID" --label "$s" "${tls[@]}" | tee "$WORK/$s.out"
    connected=$(sed -n 's/^connected \([0-9]*\) in \([0-9.]*\)s.*/\1 \2/p' "$WORK/$s.out")
    per_conn=$(sed -n "s/^server memory per idle connection: //p" "$WORK/$s.out" | head -1)
    echo "$s $connected $per_conn" >> "$ROWS"
    stop_server
done

echo
echo "| scenario | connections | connect phase (s) | connections/s | server RSS per idle connection |"
echo "|---|---|---|---|---|"
awk '{ printf "| %s | %s | %s | %.0f | %s %s |\n", $1, $2, $3, $2 / $3, $4, $5 }' "$ROWS"
