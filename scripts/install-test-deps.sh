#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root):
# the real clients the tests drive (curl, openssl, node), redis-server (the
# cluster rate-limit tests start their own) and the Python packages
# of the interop tests and probes, and the TLS scanners (testssl.sh, sslyze)
# of tests/tls_scan.rs; g++ builds libFuzzer for scripts/fuzz-smoke.sh
# (which installs cargo-fuzz itself).
# Idempotent: skips what is already there.
set -euo pipefail

need_apt=()
for pair in curl:curl openssl:openssl python3:python3 node:nodejs redis-server:redis-server testssl:testssl.sh g++:g++; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

py_need=()
python3 -c 'import h2' 2>/dev/null || py_need+=(h2)
python3 -c 'import h11' 2>/dev/null || py_need+=(h11)
python3 -c 'import requests' 2>/dev/null || py_need+=(requests)
python3 -c 'import websockets' 2>/dev/null || py_need+=(websockets)
python3 -c 'import http_message_signatures' 2>/dev/null || py_need+=(http-message-signatures)
python3 -c 'import jwt' 2>/dev/null || py_need+=(pyjwt)
python3 -c 'import cryptography' 2>/dev/null || py_need+=(cryptography)
python3 -c 'import sslyze' 2>/dev/null || py_need+=(sslyze)
python3 -c 'import kosoku' 2>/dev/null || py_need+=(kosoku)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "installing Python packages: ${py_need[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_need[@]}"
fi

command -v cargo-nextest >/dev/null 2>&1 || echo "note: cargo-nextest not found; the test command falls back to cargo test"
echo "test dependencies are installed"
