#!/usr/bin/env bash
# bench/ab.sh BIN... -- A/B of Portcullis binaries, with nginx as the reference, in alternating
# short runs: requests/s and gateway CPU per request (user and system, from /proc).
#   bench/ab.sh /tmp/pc-before target/release/portcullis
#   SC=h1|h2 (default h1)  DUR=5 (seconds per run)  ROUNDS=3
# Needs a previous bench/run.sh (its $BENCH_WORKDIR holds certificates and nginx configs), nginx, oha.
# Alternating runs on the same box cancel most of the drift that whole runs show (BENCHMARKS.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${BENCH_WORKDIR:-/tmp/portcullis-bench}
NGX=$(ls -d "$W"/results/*/nginx | tail -1)
OHA=${OHA:-$(command -v oha || echo "$W/tools/bin/oha")}
SC=${SC:-h1}; DUR=${DUR:-5}; ROUNDS=${ROUNDS:-3}
[ $# -ge 1 ] || { echo "usage: bench/ab.sh BIN..." >&2; exit 2; }
export BENCH_CERT_DIR=$W/certs BENCH_BACKEND=127.0.0.1:18080 BENCH_TLS_PORT=28443 BENCH_MTLS_PORT=28444 BENCH_GW_DIR=$W/ab
case "$SC" in h1) load=(-c 64);; h2) load=(--http2 -c 16 -p 4);; *) echo "SC=h1|h2" >&2; exit 2;; esac
nginx -p "$NGX" -c "$NGX/backend.conf"; nginx -p "$NGX" -c "$NGX/gateway.conf"
GW=
cleanup() {
  [ -n "$GW" ] && kill -TERM "$GW" 2>/dev/null || true
  nginx -p "$NGX" -c "$NGX/gateway.conf" -s quit 2>/dev/null || true
  nginx -p "$NGX" -c "$NGX/backend.conf" -s quit 2>/dev/null || true
}
trap cleanup EXIT
ticks() { local u=0 s=0 a b; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
run() { # name port pids...
  local name=$1 port=$2; shift 2
  local u0 s0 u1 s1 r
  read -r u0 s0 < <(ticks "$@")
  r=$("$OHA" -z "${DUR}s" --no-tui --ipv4 -w "${load[@]}" --cacert "$W/certs/ca.crt" "https://localhost:$port/" | awk '/Requests\/sec/{print $2}')
  read -r u1 s1 < <(ticks "$@")
  python3 -c "n=$r*$DUR; hz=$(getconf CLK_TCK); print('%-28s req/s %8.0f   CPU/req %6.2f us (user %5.2f, sys %5.2f)' % ('$name', $r, ($u1-$u0+$s1-$s0)*1e6/hz/n, ($u1-$u0)*1e6/hz/n, ($s1-$s0)*1e6/hz/n))"
}
NGM=$(pgrep -f "gateway.conf" | head -1); NW=$(pgrep -P "$NGM" | tr '\n' ' ')
for _ in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086
  run nginx 18443 $NW
  for b in "$@"; do
    PORTCULLIS_BIN=$b setsid "$HERE/gateway.sh" > "$W/ab-gateway.log" 2>&1 & GW=$!
    timeout 20 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/28443) 2>/dev/null; do sleep 0.2; done'
    PID=$(pgrep -f " serve --config $W/ab/portcullis.toml" | head -1)
    "$OHA" -n 2000 -c 64 --no-tui --ipv4 --cacert "$W/certs/ca.crt" https://localhost:28443/ > /dev/null
    run "$b" 28443 "$PID"
    kill -TERM "$GW"; wait "$GW" 2>/dev/null || true; GW=
  done
done
