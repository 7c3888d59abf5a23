#!/usr/bin/env bash
# The auction API under load (issue 14), in the style of the seed's own test
# (`hey -m POST -n 100000 -c 1000` of bids with a Bearer token): a fresh `ingot serve`
# (SQLite, fsync per commit unless SERVE_FLAGS says otherwise), then, side by side in one
# run:
#   1. GET /ping, N requests at C connections (the HTTP stack alone);
#   2. POST /v1/bid, N bids at C connections on one offer: four hey processes of C/4
#      connections and N/4 bids each, each bidding its own price (100, 200, 300, 400),
#      so the highest bid changes hands while they run.
# Then it checks the invariants through the API: every 201 bid is stored, exactly one
# bid is winning, it is the first bid at the highest price, and the offer's price is its.
# Needs `hey` (Debian's package; installed here when missing, as root).
#
#   bench/auction.sh                 # N=100000 C=1000
#   N=20000 C=200 bench/auction.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
C=${C:-1000}
PASSWORD=bench-password-1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v hey >/dev/null; then
    echo "==> installing hey (Debian package) for the HTTP load"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq hey >/dev/null; else sudo apt-get install -y -qq hey >/dev/null; fi
fi

# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_work auction

# shellcheck disable=SC2086
start_server "$WORK" --market-bid-queue 20000 ${SERVE_FLAGS:-}
post() { curl -s -X POST "$HTTP$1" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
token() { post /v1/login "{\"username\": \"$1\", \"password\": \"$1-password\"}" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p'; }
for u in seller bidder; do post /v1/signup "{\"username\": \"$u\", \"password\": \"$u-password\"}" >/dev/null; done
SELLER=$(token seller) BIDDER=$(token bidder)
OFFER=$(post /v1/offer '{"title": "bench", "bid_price": 1}' "$SELLER" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')

# hey's summary: requests/s, p50 and p99 in ms, and the count of each status.
summary() {
    awk '/Requests\/sec:/ { rps = $2 }
         / 50%+ in / { p50 = $3 * 1000 } / 99%+ in / { p99 = $3 * 1000 }
         /^ *\[[0-9]+\]/ { gsub(/[\[\]]/, "", $1); codes = codes $1 ":" $2 " " }
         END { printf "%.0f req/s, p50 %.1f ms, p99 %.1f ms, statuses %s\n", rps, p50, p99, codes }' "$1"
}

echo "==> GET /ping: $N requests, $C connections"
hey -n "$N" -c "$C" "$HTTP/ping" >"$WORK/ping.txt"
summary "$WORK/ping.txt"

echo "==> POST /v1/bid: $N bids, $C connections (4 × hey at prices 100, 200, 300, 400)"
started=$(date +%s.%N)
for price in 100 200 300 400; do
    echo "{\"bid_price\": $price, \"offer_id\": \"$OFFER\"}" >"$WORK/bid-$price.json"
    hey -m POST -n $((N / 4)) -c $((C / 4)) -H 'Content-Type: application/json' -H "Authorization: Bearer $BIDDER" \
        -D "$WORK/bid-$price.json" "$HTTP/v1/bid" >"$WORK/bid-$price.txt" &
done
wait $(jobs -p | grep -v "^$SERVER_PID$") 2>/dev/null || true
ended=$(date +%s.%N)
for price in 100 200 300 400; do printf "price %s: " "$price"; summary "$WORK/bid-$price.txt"; done
created=$(cat "$WORK"/bid-*.txt | awk '/^ *\[201\]/ { s += $2 } END { print s + 0 }')
awk -v n="$created" -v a="$started" -v b="$ended" 'BEGIN { printf "all four: %d bids answered 201 in %.1f s: %.0f bids/s\n", n, b - a, n / (b - a) }'

echo "==> invariants"
python3 - "$HTTP" "$OFFER" "$SELLER" "$created" <<'PY'
import json, sys, urllib.request
http, offer, token, created = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def get(path):
    req = urllib.request.Request(http + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
bids, page = [], 0
while True:
    got = get(f"/v1/offer/{offer}/bids?size=100&page={page}")
    bids += got
    if len(got) < 100:
        break
    page += 1
winners = [b for b in bids if b["winning"]]
top = max(b["bid_price"] for b in bids)
first_top = next(b for b in bids if b["bid_price"] == top)
price = get(f"/v1/offer/{offer}")["bid_price"]
checks = {
    f"every 201 bid stored ({created} answered, {len(bids)} stored)": len(bids) == created,
    f"exactly one winning bid ({len(winners)})": len(winners) == 1,
    f"the winner is the first bid at the top price {top}": bool(winners) and winners[0]["id"] == first_top["id"],
    f"the offer's price {price} is the winner's": bool(winners) and price == winners[0]["bid_price"] == top,
}
for what, ok in checks.items():
    print(("ok    " if ok else "FAILED"), what)
sys.exit(0 if all(checks.values()) else 1)
PY
echo "## $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); hey and the server share them"
