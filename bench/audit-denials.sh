#!/usr/bin/env bash
# bench/audit-denials.sh -- what the audit log costs on the denial path.
#
# Serves one route that needs an API key and sends it requests without one
# (every answer a 401, every one an `auth_failure` audit record), once with
# `[audit]` and once without, alternating, with h2load over HTTP/2. Prints
# req/s and the gateway's CPU time per request (startup included, ~0.1 s).
#   REPS (3)  N (requests per run, 200000)  C (connections, 16)  M (streams per connection, 8)
#   PORTCULLIS_BIN (default target/release/portcullis of this checkout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PORTCULLIS_BIN:-$ROOT/target/release/portcullis}
REPS=${REPS:-3}
N=${N:-200000}
C=${C:-16}
M=${M:-8}
DIR=$(mktemp -d /tmp/portcullis-audit-bench.XXXXXX)
trap 'kill "$GW" 2>/dev/null || true; rm -rf "$DIR"' EXIT
GW=

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$DIR/server.key" -out "$DIR/server.crt" 2>/dev/null
HASH=$("$BIN" apikey create bench | sed -n 's/.*hash = "\([^"]*\)".*/\1/p' | head -1)

run() { # $1 = with|without
  local port echo audit=""
  port=$(free_port); echo=$(free_port)
  [ "$1" = with ] && audit=$'[audit]\npath = "audit.log"\n'
  cat > "$DIR/portcullis.toml" <<TOML
[server]
worker_threads = 2
[log]
access_log = "off"
level = "error"
$audit
[[echo]]
address = "127.0.0.1:$echo"
[[upstream]]
name = "echo"
servers = ["127.0.0.1:$echo"]
[[consumer]]
name = "bench"
api_keys = [{ hash = "$HASH" }]
[[route]]
name = "keyed"
path = "/"
upstream = "echo"
auth = ["apikey"]
[[listener]]
address = "127.0.0.1:$port"
[[listener.certificate]]
cert = "server.crt"
key = "server.key"
TOML
  rm -f "$DIR/audit.log"
  "$BIN" serve --config "$DIR/portcullis.toml" 2>"$DIR/gw.err" & GW=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  local out rps
  out=$(h2load -n "$N" -c "$C" -m "$M" "https://127.0.0.1:$port/x")
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  local codes; codes=$(grep '^status codes' <<<"$out")
  # The gateway's CPU (user + system, all threads, the writer included) per request.
  local ticks hz cpu
  ticks=$(awk '{print $14 + $15}' "/proc/$GW/stat"); hz=$(getconf CLK_TCK)
  cpu=$(awk -v t="$ticks" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  kill "$GW"; wait "$GW" 2>/dev/null || true; GW=
  local lines=0 drops=""; [ -f "$DIR/audit.log" ] && lines=$(wc -l < "$DIR/audit.log")
  [ -f "$DIR/audit.log" ] && drops=$(grep -c '"event":"audit_dropped"' "$DIR/audit.log" || true)
  [ -n "$drops" ] && [ "$drops" != 0 ] && lines="$lines (audit_dropped records: $drops, lost: $(grep -o '"lost":"[0-9]*"' "$DIR/audit.log" | tr -dc '0-9\n' | awk '{s+=$1} END {print s}'))"
  printf '%-8s %10s req/s  %6s us CPU/req   %s   audit lines: %s\n' "$1" "$rps" "$cpu" "$codes" "$lines"
  if [ "$1" = with ]; then "$BIN" audit verify "$DIR/audit.log"; fi
}

for _ in $(seq "$REPS"); do run without; run with; done
