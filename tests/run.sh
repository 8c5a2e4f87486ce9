#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine or an already set-up one.
#
# It installs what the tests need when it is missing, starts the servers the integration
# tests talk to on 127.0.0.1 only, runs the formatting and lint checks and the whole test
# suite, and stops what it started, whether the tests pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# --- what the tests need -----------------------------------------------------------------
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is required ($2)" >&2; exit 2; }
}
need_cmd cargo "install the Rust toolchain"
need_cmd tar "apt-get install -y tar"
need_cmd setpriv "apt-get install -y util-linux"

# --- servers ------------------------------------------------------------------------------
# Each server is started on a free loopback port with its own temporary folder; their
# addresses reach the tests through environment variables. None is needed yet: the
# destination crates that use them add their start-up here.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/service-backup-tests.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- checks and tests ---------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
