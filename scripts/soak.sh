#!/usr/bin/env bash
# The soak under faults (issue 9): mixed traffic (HTTP/1.1, HTTP/2, mTLS,
# WebSocket over wss, a Redis-backed rate limit) through the release gateway
# while an upstream is killed and restarted, the config is reloaded (SIGHUP),
# the server certificate is rotated on disk, a client certificate is revoked,
# Redis is restarted and TLS handshakes are flooded from one address.
#
#   bash scripts/soak.sh                 # 3 minutes (warm-up: 15 s + one round of faults)
#   SOAK_SECS=600 bash scripts/soak.sh   # longer
#
# Not part of scripts/test.sh. Needs what scripts/install-test-deps.sh
# installs (redis-server, python3 with requests, h2, websockets). Exit status
# non-zero on an unexplained failure, a panic, a fault without its effect, or
# gateway RSS growth of 10% or more after warm-up; the figures go to stdout
# and soak-report.json in the work directory (kept on failure, or with
# SOAK_KEEP=1). See RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS=${SOAK_SECS:-180}
SOAK_WARMUP_SECS=${SOAK_WARMUP_SECS:-15}

for bin in redis-server python3; do
  command -v "$bin" >/dev/null 2>&1 || { echo "soak: $bin is missing (run scripts/install-test-deps.sh)" >&2; exit 2; }
done
python3 -c 'import requests, h2, websockets' 2>/dev/null \
  || { echo "soak: python3 needs requests, h2 and websockets (run scripts/install-test-deps.sh)" >&2; exit 2; }

cargo build --release --locked -p portcullis

keep=()
[ "${SOAK_KEEP:-0}" = "1" ] && keep=(--keep)
exec python3 scripts/soak/driver.py --bin target/release/portcullis \
  --secs "$SOAK_SECS" --warmup "$SOAK_WARMUP_SECS" "${keep[@]}"
