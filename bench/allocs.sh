#!/usr/bin/env bash
# bench/allocs.sh [BIN] [N] -- heap allocations per proxied keep-alive request, counted exactly with
# uprobes on the allocator (mimalloc's mi_malloc_aligned / mi_realloc_aligned / mi_free) while oha
# sends N requests (default 20000) through bench/gateway.sh's config. RECORD=1 also records call
# stacks (perf.data in $BENCH_WORKDIR/allocs/; `perf script` shows who allocates).
# Needs root (uprobes), perf, nginx, oha, and a previous bench/run.sh workdir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(readlink -f "${1:-$HERE/../target/release/portcullis}"); N=${2:-20000}
W=${BENCH_WORKDIR:-/tmp/portcullis-bench}; D="$W/allocs"; mkdir -p "$D"
NGX=$(ls -d "$W"/results/*/nginx | tail -1)
OHA=${OHA:-$(command -v oha || echo "$W/tools/bin/oha")}
export BENCH_CERT_DIR=$W/certs BENCH_BACKEND=127.0.0.1:18080 BENCH_TLS_PORT=28443 BENCH_MTLS_PORT=28444 BENCH_GW_DIR=$D PORTCULLIS_BIN=$BIN
EV=(mi_malloc_aligned mi_realloc_aligned mi_free)
perf probe -q -d 'pcalloc:*' 2>/dev/null || true
for f in "${EV[@]}"; do perf probe -q -x "$BIN" -a "pcalloc:$f=$f"; done
nginx -p "$NGX" -c "$NGX/backend.conf"
setsid "$HERE/gateway.sh" > "$D/gateway.log" 2>&1 & GW=$!
cleanup() { kill -TERM "$GW" 2>/dev/null || true; nginx -p "$NGX" -c "$NGX/backend.conf" -s quit 2>/dev/null || true; perf probe -q -d 'pcalloc:*' 2>/dev/null || true; }
trap cleanup EXIT
timeout 20 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/28443) 2>/dev/null; do sleep 0.2; done'
PID=$(pgrep -f " serve --config $D/portcullis.toml" | head -1)
# Warm up: connections, pools and caches exist before counting.
"$OHA" -n 2000 -c 64 --no-tui --ipv4 --cacert "$W/certs/ca.crt" https://localhost:28443/ > /dev/null
events=(); for f in "${EV[@]}"; do events+=(-e "pcalloc:$f"); done
if [ "${RECORD:-0}" = 1 ]; then
  perf record "${events[@]}" --call-graph dwarf,8192 -p "$PID" -o "$D/perf.data" 2> /dev/null & PF=$!
else
  perf stat "${events[@]}" -p "$PID" -o "$D/stat.txt" & PF=$!
fi
sleep 0.5
"$OHA" -n "$N" -c 64 --no-tui --ipv4 --cacert "$W/certs/ca.crt" https://localhost:28443/ | grep -E "Requests/sec|\[200\]"
sleep 0.3; kill -INT "$PF"; wait "$PF" || true
[ -f "$D/stat.txt" ] && grep pcalloc "$D/stat.txt" | awk -v n="$N" '{gsub(/,/, "", $1); printf "%-28s %7.2f per request\n", $2, $1 / n}'
