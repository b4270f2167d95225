#!/usr/bin/env bash
# bench/profile.sh SCENARIO [SECONDS] -- perf profile of Portcullis under one harness scenario.
#   SCENARIO: h1 | h2 | hs | mh1 | mhs  (m = the mTLS listener)
# Starts the harness's nginx backend (from the last compare.sh run's config), Portcullis with
# bench/gateway.sh's config, loads it with oha and samples it with `perf record -e cpu-clock -g`
# (software clock: works in VMs without a PMU). Prints the top symbols; perf.data stays in
# $BENCH_WORKDIR/profile/. Needs a previous bench/run.sh (certs, nginx confs) and perf.
# PERF_CALLGRAPH="--call-graph dwarf" PERF_FREQ=500: full stacks through frames without pointers.
set -euo pipefail
SC=${1:-h1}; DUR=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
W=${BENCH_WORKDIR:-/tmp/portcullis-bench}; P="$W/profile"; mkdir -p "$P"
OHA=${OHA:-$(command -v oha || echo "$W/tools/bin/oha")}
export PORTCULLIS_BIN=${PORTCULLIS_BIN:-$ROOT/target/release/portcullis}
CERTS="$W/certs"; NGX=$(ls -d "$W"/results/*/nginx | tail -1)
export BENCH_CERT_DIR=$CERTS BENCH_BACKEND=127.0.0.1:18080 BENCH_TLS_PORT=28443 BENCH_MTLS_PORT=28444 BENCH_GW_DIR="$P"
nginx -p "$NGX" -c "$NGX/backend.conf"
setsid "$HERE/gateway.sh" > "$P/gateway.log" 2>&1 & GW=$!
cleanup() { kill -TERM -- -"$GW" 2>/dev/null || true; nginx -p "$NGX" -c "$NGX/backend.conf" -s quit 2>/dev/null || true; }
trap cleanup EXIT
timeout 20 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/28443) 2>/dev/null; do sleep 0.2; done'
PID=$(pgrep -f " serve --config $P/portcullis.toml" | head -1)
port=28443; tls=(--cacert "$CERTS/ca.crt")
case "$SC" in m*) port=28444; tls+=(--cert "$CERTS/client.crt" --key "$CERTS/client.key");; esac
case "$SC" in
  h1|mh1) args=(-c 64);; h2) args=(--http2 -c 16 -p 4);; hs|mhs) args=(-c 64 --disable-keepalive);;
  *) echo "unknown scenario $SC" >&2; exit 2;;
esac
"$OHA" -z "$((DUR + 2))s" --no-tui --ipv4 -w "${args[@]}" "${tls[@]}" "https://localhost:$port/" > "$P/oha-$SC.txt" 2>&1 & LOAD=$!
sleep 1
perf record -e cpu-clock -F "${PERF_FREQ:-2000}" ${PERF_CALLGRAPH:--g} -p "$PID" -o "$P/perf-$SC.data" -- sleep "$DUR" 2> /dev/null
wait "$LOAD"
grep -E "Requests/sec" "$P/oha-$SC.txt" || true
perf report -i "$P/perf-$SC.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' | head -40
