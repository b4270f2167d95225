#!/usr/bin/env bash
# Side by side on one gateway: POST of a ~1 KiB JSON body to a route without
# validation and to a route with [route.validate] schema = … (the schema of
# crates/portcullis-proxy/benches/validate.rs), over HTTP/2 with h2load.
# Prints req/s and the gateway's CPU time per request for each.
#
#   bench/validate.sh [requests=20000] [clients=8] [streams=4]
# Needs: target/release/portcullis (cargo build --release -p portcullis), h2load, openssl, python3.
set -euo pipefail
N=${1:-20000}; C=${2:-8}; M=${3:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/portcullis}
D=$(mktemp -d); trap 'kill $GW 2>/dev/null || true; rm -rf "$D"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ECHO=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$D/k.pem" -out "$D/c.pem" 2>/dev/null
cat >"$D/schema.json" <<'EOF'
{"type":"object","required":["id","email","name","items"],"additionalProperties":false,
 "properties":{"id":{"type":"integer","minimum":1},"email":{"type":"string","format":"email"},
 "name":{"type":"string","maxLength":80},"created":{"type":"string","format":"date-time"},
 "tags":{"type":"array","items":{"type":"string"},"maxItems":20},
 "items":{"type":"array","items":{"type":"object","required":["sku","qty","price"],
  "properties":{"sku":{"type":"string","pattern":"^[A-Z0-9-]+$"},"qty":{"type":"integer","minimum":1},
   "price":{"type":"number","minimum":0}}}}}}
EOF
python3 - "$D/body.json" <<'EOF'
import json, sys
items = [{"sku": "SKU-%04d-AB" % i, "qty": i + 1, "price": 9.99 + i} for i in range(17)]
doc = {"id": 4711, "email": "ada.lovelace@example.com", "name": "Ada Lovelace",
       "created": "2026-11-29T02:00:00Z", "tags": ["vip", "beta", "eu-west", "newsletter"], "items": items}
open(sys.argv[1], "w").write(json.dumps(doc, separators=(",", ":")))
EOF
cat >"$D/p.toml" <<EOF
[log]
access_log = "off"
level = "warn"
[[listener]]
address = "127.0.0.1:$PORT"
[[listener.certificate]]
cert = "c.pem"
key = "k.pem"
[[echo]]
address = "127.0.0.1:$ECHO"
[[upstream]]
name = "echo"
servers = ["127.0.0.1:$ECHO"]
[[route]]
path = "/plain/"
upstream = "echo"
[[route]]
path = "/checked/"
upstream = "echo"
[route.validate]
schema = "schema.json"
EOF
"$BIN" serve --config "$D/p.toml" & GW=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14+$15}' /proc/$GW/stat; }
TCK=$(getconf CLK_TCK)
echo "body: $(wc -c <"$D/body.json") bytes; $N requests, $C clients x $M streams (h2)"
for path in /plain/x /checked/x /plain/x /checked/x; do
  h2load -n 2000 -c "$C" -m "$M" -d "$D/body.json" -H 'content-type: application/json' "https://localhost:$PORT$path" >/dev/null 2>&1
  c0=$(cpu)
  out=$(h2load -n "$N" -c "$C" -m "$M" -d "$D/body.json" -H 'content-type: application/json' "https://localhost:$PORT$path" 2>&1)
  c1=$(cpu)
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
  us=$(python3 -c "print(round(($c1-$c0)/$TCK/$N*1e6, 1))")
  printf '%-10s %8s req/s  %6s us CPU/request  2xx=%s\n' "$path" "$rps" "$us" "$ok"
done
