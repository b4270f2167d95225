#!/usr/bin/env bash
# A short run of every cargo-fuzz target in fuzz/ (docs/fuzzing.md), on the
# stable toolchain: `cargo fuzz run -s none` needs no nightly flag.
#
#   FUZZ_SECS   seconds per target (default 30; 0 skips fuzzing)
#   FUZZ_JOBS   targets fuzzed side by side (default: the number of cores, max 4)
#   FUZZ_PROFILE  dev (default) or release. A cold dev build costs less than
#               half the CPU of a release one (docs/fuzzing.md), which
#               matters more for a 30 s smoke run than release's ~10x speed;
#               use release for long runs.
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and grows a
# working corpus in fuzz/corpus/TARGET (not committed). A crash fails the
# script; the input is in fuzz/artifacts/TARGET/ and the log is printed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECS="${FUZZ_SECS:-30}"
if [ "$FUZZ_SECS" = 0 ]; then
  echo "fuzz-smoke: FUZZ_SECS=0, skipped"
  exit 0
fi
cores=$(nproc 2>/dev/null || echo 2)
FUZZ_JOBS="${FUZZ_JOBS:-$((cores < 4 ? cores : 4))}"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "fuzz-smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

start=$(date +%s)
# One build of every target (debug assertions on, no sanitizer).
FUZZ_PROFILE="${FUZZ_PROFILE:-dev}"
case "$FUZZ_PROFILE" in
  dev) cargo fuzz build -s none --dev; dir=debug ;;
  release) cargo fuzz build -s none --release; dir=release ;;
  *) echo "fuzz-smoke: FUZZ_PROFILE must be dev or release" >&2; exit 2 ;;
esac
echo "fuzz-smoke: targets built in $(($(date +%s) - start)) s"

mapfile -t targets < <(cargo fuzz list)
bin="${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/$dir"
logs=target/fuzz-smoke
rm -rf "$logs" && mkdir -p "$logs"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do sleep 1; done
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  # What `cargo fuzz run -s none $t corpus/$t seeds/$t -- -max_total_time=N`
  # runs, without its rebuild check: the targets were just built, and
  # parallel runs would only queue on cargo's lock.
  (
    rc=0
    "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$FUZZ_SECS" -timeout=20 \
      -print_final_stats=1 "corpus/$t" "seeds/$t" >"$logs/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$logs/$t.rc"
  ) &
done
wait

failed=()
for t in "${targets[@]}"; do
  if [ "$(cat "$logs/$t.rc" 2>/dev/null)" = 0 ]; then
    echo "fuzz-smoke: $t ok: $(grep -E '^Done [0-9]+ runs' "$logs/$t.log" | tail -n1)"
  else
    echo "fuzz-smoke: $t FAILED; its log ends:"
    tail -n 60 "$logs/$t.log"
    failed+=("$t")
  fi
done

echo "fuzz-smoke: ${#targets[@]} targets, ${FUZZ_SECS} s each, $(($(date +%s) - start)) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
