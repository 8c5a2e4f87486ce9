#!/usr/bin/env bash
# Builds and runs the fuzz targets (cargo-fuzz, libFuzzer) on the stable toolchain.
# usage: bash fuzz/run.sh smoke [SECONDS]   every target over the committed corpus and
#                                            regression inputs, then SECONDS of fuzzing each
#                                            (default 5); fails on any crash
#        bash fuzz/run.sh long TARGET RUNS   fuzzes TARGET for RUNS executions; new inputs go
#                                            to fuzz/new-corpus/TARGET (minimize them into
#                                            fuzz/corpus/TARGET with `cargo fuzz cmin`)
#
# cargo-fuzz passes nightly-only flags (-Z...) to rustc: RUSTC_BOOTSTRAP=1
# lets the stable compiler accept them, so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
# Fuzz builds (other flags, release) go beside the workspace's, never over them.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"; fi
TARGETS=(header recipient decrypt extract config manifest cron api index)
CARGO_FUZZ_VERSION=0.13.2

# shellcheck source=tests/cargo-tool.sh
source ../tests/cargo-tool.sh
install_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION"

# Release build with debug assertions (overflow checks). No sanitizer: our crates forbid
# unsafe code, and AddressSanitizer would slow every execution down about three times.
build() { cargo fuzz build --release --debug-assertions --sanitizer none "$@"; }

# Options per target: the archive targets read whole chunks, the others small texts.
max_len() {
  case "$1" in
    decrypt) echo 140000 ;;
    extract) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

run() {
  local target=$1 scratch=$2
  shift 2
  mkdir -p "$scratch/$target" "corpus/$target" "regressions/$target"
  cargo fuzz run --release --debug-assertions --sanitizer none "$target" \
    "$scratch/$target" "corpus/$target" "regressions/$target" -- \
    -artifact_prefix="$scratch/$target-" -max_len="$(max_len "$target")" \
    -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 "$@"
}

case "${1:-smoke}" in
  smoke)
    seconds=${2:-5}
    build
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for t in "${TARGETS[@]}"; do
      echo "fuzz/run.sh: $t for ${seconds}s" >&2
      run "$t" "$scratch" -max_total_time="$seconds" 2>"$scratch/$t.log" || {
        tail -50 "$scratch/$t.log" >&2
        echo "fuzz/run.sh: $t failed; the input is in the log above" >&2
        exit 1
      }
      grep -h "stat::number_of_executed_units" "$scratch/$t.log" >&2 || true
    done
    ;;
  long)
    target=$2 runs=$3
    build "$target"
    mkdir -p new-corpus artifacts
    run "$target" new-corpus -runs="$runs" -artifact_prefix="artifacts/$target-"
    ;;
  *)
    echo "usage: bash fuzz/run.sh smoke [SECONDS] | long TARGET RUNS" >&2
    exit 2
    ;;
esac
