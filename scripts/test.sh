#!/usr/bin/env bash
# The project's test command: every test, unit to interop, against real
# sockets, TLS, clients and servers. Run scripts/install-test-deps.sh first on
# a fresh machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads 4
# A short run of every fuzz target (stable toolchain; FUZZ_SECS=0 skips it).
scripts/fuzz-smoke.sh
