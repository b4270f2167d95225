#!/usr/bin/env bash
# bench/icount.sh BIN [h1|h2] -- user-space instructions per proxied request, counted by callgrind.
# Runs the gateway (bench/gateway.sh's config) under valgrind twice, N1 and N2 keep-alive requests
# (oha, 8 connections), and prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, handshakes and shutdown
# cancel out. Repeats to within about 1 % (four runs of one build: 56,501-56,972), so a 2 % change shows, where
# timing runs on this shared box drift 5-10 % (BENCHMARKS.md). Kernel time is not counted:
# compare syscalls and CPU with bench/ab.sh as well.
# Needs a previous bench/run.sh (its $BENCH_WORKDIR: certificates, nginx backend config), oha, valgrind.
#   N1=1000 N2=6000 bench/icount.sh target/release/portcullis h2
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "$1"); SC=${2:-h1}
W=${BENCH_WORKDIR:-/tmp/portcullis-bench}
NGX=$(ls -d "$W"/results/*/nginx | tail -1)
OHA=${OHA:-$(command -v oha || echo "$W/tools/bin/oha")}
N1=${N1:-1000}; N2=${N2:-6000}
export BENCH_CERT_DIR=$W/certs BENCH_BACKEND=127.0.0.1:18080 BENCH_TLS_PORT=28443 BENCH_MTLS_PORT=28444 \
  BENCH_GW_DIR=$W/icount PORTCULLIS_BIN=$BIN
case "$SC" in h1) load=(-c 8);; h2) load=(--http2 -c 2 -p 4);; *) echo "h1|h2" >&2; exit 2;; esac
nginx -p "$NGX" -c "$NGX/backend.conf"
trap 'nginx -p "$NGX" -c "$NGX/backend.conf" -s quit 2>/dev/null || true' EXIT
one() {
  local n=$1; local out=$W/icount/callgrind-$n.out
  BENCH_GW_WRAP="valgrind --tool=callgrind --cache-sim=no --callgrind-out-file=$out" \
    setsid "$HERE/gateway.sh" > "$W/icount/gateway-$n.log" 2>&1 & local gw=$!
  timeout 120 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/28443) 2>/dev/null; do sleep 0.5; done'
  "$OHA" -n "$n" --no-tui --ipv4 "${load[@]}" --cacert "$W/certs/ca.crt" https://localhost:28443/ > "$W/icount/oha-$n.txt"
  grep -q "\[200\] $n " "$W/icount/oha-$n.txt" || { echo "not every request answered 200:" >&2; cat "$W/icount/oha-$n.txt" >&2; exit 1; }
  kill -TERM "$gw"; wait "$gw" 2>/dev/null || true
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'
}
mkdir -p "$W/icount"
a=$(one "$N1"); b=$(one "$N2")
echo "$BIN $SC: $(( (b - a) / (N2 - N1) )) instructions per request (callgrind; $W/icount/callgrind-$N2.out for callgrind_annotate)"
