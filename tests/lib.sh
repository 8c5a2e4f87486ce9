# Helpers shared by tests/run.sh and bench/run.sh, and used by the files in tests/servers/.
# Source it from bash with `set -euo pipefail`; set SCRIPT (the name shown in error
# messages) and WORK_PREFIX (the name of the temporary folder) before sourcing.
#
# Defines: log, free_port, wait_for_port, apt_install; WORK, a new temporary folder;
# PIDS, the processes to stop; cleanup, which stops them and removes WORK, installed as the
# EXIT, INT and TERM trap.

SCRIPT=${SCRIPT:-tests/run.sh}
WORK_PREFIX=${WORK_PREFIX:-service-backup-tests}

# A command that fails under `set -e` says which one and where, instead of ending the run
# without a word (a server's set-up function failed silently once on a fresh machine).
set -E
trap 'echo "$SCRIPT: stopped: \`$BASH_COMMAND\` failed (status $?) at ${BASH_SOURCE[0]:-?}:$LINENO" >&2' ERR

log() { printf '==> [%s] %s\n' "$(date +%T)" "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$WORK_PREFIX.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections, for at most $2 seconds; $3 names the server.
wait_for_port() {
  local port=$1 limit=$2 name=$3 i
  for ((i = 0; i < limit * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$SCRIPT: $name did not open port $port within ${limit}s" >&2
  return 1
}

# apt-get install, updating the package lists once when a package is missing.
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
