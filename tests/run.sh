#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine or an already set-up one.
# usage: bash tests/run.sh [CARGO TEST ARGS]
#
# It installs what the tests need when it is missing, starts the servers the integration
# tests talk to on 127.0.0.1 only, runs the formatting and lint checks and the whole test
# suite, and stops what it started, whether the tests pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- what the tests need -----------------------------------------------------------------
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is required ($2)" >&2; exit 2; }
}
need_cmd cargo "install the Rust toolchain"
need_cmd tar "apt-get install -y tar"
need_cmd setpriv "apt-get install -y util-linux"

# --- servers ------------------------------------------------------------------------------
# Each file in tests/servers/ defines `start_<name>` (install if missing, start on a free
# loopback port with its own folder under $WORK, wait until it answers, export its address
# as SB_TEST_* variables) and may append PIDs to PIDS. They are started in turn here.
# tests/lib.sh defines log, free_port, wait_for_port and apt_install, makes $WORK, and
# stops every PID in PIDS and removes $WORK on exit.
# shellcheck source=tests/lib.sh
source tests/lib.sh

# The zstd command line reads the archives of `compression: zstd` in the tests, as tar does.
command -v zstd >/dev/null 2>&1 || apt_install zstd
# `man -l` renders the generated man page in crates/agent/tests/completions.rs.
command -v man >/dev/null 2>&1 || apt_install man-db
# tmux gives the terminal tests (crates/agent/tests/terminal.rs) a screen to read.
command -v tmux >/dev/null 2>&1 || apt_install tmux

for server in tests/servers/*.sh; do
  [ -e "$server" ] || continue
  # shellcheck source=/dev/null
  source "$server"
  name=$(basename "$server" .sh)
  log "starting $name"
  "start_$name"
done

# --- secrets ------------------------------------------------------------------------------
# The test helpers append every run's output and the secrets they configure to files in
# SB_TEST_OUTPUT_DIR; the servers' secrets (Azure key, SSH and GCS private keys) are added
# here, `cargo test`'s own output (panics included) too, and tests/check-secrets.sh fails
# the run if any secret shows up.
export SB_TEST_OUTPUT_DIR="$WORK/output"
mkdir -p "$SB_TEST_OUTPUT_DIR"
for var in SB_TEST_AZURE_KEY; do
  if [ -n "${!var:-}" ]; then echo "${!var}"; fi
done >"$SB_TEST_OUTPUT_DIR/secrets-servers.log"
for var in SB_TEST_SCP_KEY SB_TEST_SCP_KEY_RSA_PEM SB_TEST_SCP_KEY_ECDSA SB_TEST_SCP_KEY_UNAUTHORIZED; do
  if [ -f "${!var:-}" ]; then cat "${!var}"; fi
done >>"$SB_TEST_OUTPUT_DIR/secrets-servers.log"
for var in SB_TEST_GCS_KEY_FILE SB_TEST_GCS_WRONG_KEY_FILE; do
  if [ -f "${!var:-}" ]; then
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["private_key"])' "${!var}"
  fi
done >>"$SB_TEST_OUTPUT_DIR/secrets-servers.log"

run_tests() {
  cargo test --locked "$@" 2>&1 | tee -a "$SB_TEST_OUTPUT_DIR/cargo-test.log"
  log "checking that no secret appears in the output"
  bash tests/check-secrets.sh "$SB_TEST_OUTPUT_DIR"
}

# --- checks and tests ---------------------------------------------------------------------
# With arguments, only `cargo test ARGS` runs (against the same servers), e.g.
#   bash tests/run.sh -p service-backup --test fanout
if [ $# -gt 0 ]; then
  log "cargo test $*"
  run_tests "$@"
  exit
fi
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "no import circles between the modules of a crate"
for src in crates/*/src; do python3 scripts/import-circles.py "$src" 2; done
log "cargo deny (licences, duplicate versions, sources)"
# shellcheck source=tests/cargo-tool.sh
source tests/cargo-tool.sh
install_cargo_tool cargo-deny 0.20.2
cargo deny --locked check bans licenses sources
# The advisory database is fetched from GitHub: where it cannot be reached the check says
# so loudly and goes on; any other failure (an advisory) fails the run. See README.
if ! out=$(cargo deny --locked check advisories 2>&1); then
  if grep -q "failed to fetch advisory database" <<<"$out"; then
    log "WARNING: security advisories NOT checked: the advisory database cannot be fetched here"
  else
    echo "$out" >&2
    exit 1
  fi
fi
log "cargo test"
run_tests --workspace
log "fuzz smoke run (fuzz/run.sh)"
bash fuzz/run.sh smoke 5
log "every check passed"
