#!/usr/bin/env bash
# bench/run.sh -- Portcullis vs nginx, side by side, in one run (../shared/bench/compare.sh).
#
#   bench/run.sh                                   # defaults: 10 s x 3 reps, h1,h2,hs, TLS + mTLS listeners
#   bench/run.sh --duration 3 --reps 1             # smoke run
#   bench/run.sh --scenarios h1,h2,hs,x1,x2        # any compare.sh option is passed through
#
# Builds `cargo build --release -p portcullis`, then runs compare.sh with bench/gateway.sh as the
# candidate (a config mirroring the nginx baseline). Prints the summary; copies it to
# bench/results/<date>-summary.txt (the raw JSON stays in $BENCH_WORKDIR/results/<timestamp>/).
# Env: PORTCULLIS_SHARED (default <repo>/../shared), BENCH_WORKDIR (/tmp/portcullis-bench),
#      NO_BUILD=1 (use the existing target/release/portcullis), PORTCULLIS_BIN=/path (use that binary,
#      no build), plus compare.sh's OHA, QUIET_MAX, FOREIGN_MAX.
# Needs: nginx, oha 1.16 (cargo install oha --version 1.16.0 --locked --root /tmp/portcullis-bench/tools),
#        python3, curl; h2load for x1/x2 (apt-get install -y nginx nghttp2-client).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/.." && pwd))
SHARED=${PORTCULLIS_SHARED:-$ROOT/../shared}
COMPARE="$SHARED/bench/compare.sh"
[ -x "$COMPARE" ] || { echo "no $COMPARE (clone shared/ beside the repo or set PORTCULLIS_SHARED)" >&2; exit 1; }
cd "$ROOT"

if [ -n "${PORTCULLIS_BIN:-}" ]; then
  echo "using PORTCULLIS_BIN=$PORTCULLIS_BIN (not building)" >&2
else
  [ "${NO_BUILD:-0}" = 1 ] || cargo build --release -p portcullis
  PORTCULLIS_BIN="$ROOT/target/release/portcullis"
fi
[ -x "$PORTCULLIS_BIN" ] || { echo "$PORTCULLIS_BIN missing" >&2; exit 1; }
export PORTCULLIS_BIN

export BENCH_WORKDIR=${BENCH_WORKDIR:-/tmp/portcullis-bench}
OUT="$BENCH_WORKDIR/results/$(date +%Y%m%d-%H%M%S)"
"$COMPARE" --gw-cmd bench/gateway.sh --out "$OUT" "$@"

if [ -f "$OUT/summary.txt" ]; then
  mkdir -p "$HERE/results"
  dst="$HERE/results/$(date +%Y-%m-%d)-summary.txt"
  { cat "$OUT/env.txt"; echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "binary: $PORTCULLIS_BIN"; echo "args: $*"; echo; cat "$OUT/summary.txt"; } > "$dst"
  echo "summary copied to $dst"
  echo; echo "Markdown tables (bench/report.py):"; echo
  python3 "$HERE/report.py" "$OUT/results.jsonl"
fi
