#!/usr/bin/env bash
# The fleet bench: one agent among many instances sharing one bucket and prefix.
#
# usage: bash bench/fleet.sh [--instances 1000] [--days 90] [--requests 1000]
#                            [--bin target/release/service-backup] [--only local|s3]
#
# It writes the manifests and tiny archives of INSTANCES instances x DAYS daily backups into
# a local destination and into moto (S3), directly (bench/fleet-seed.py, in parallel; no
# backup runs), then measures, for one instance (inst-00007):
#   cold list         `list` with an empty catalog (a new state_dir)
#   warm list         `list` again (an incremental refresh)
#   restore latest    `restore` of the newest backup (selection from the catalog, then the
#                     manifest checked and the tiny archive restored)
#   prune --dry-run   retention `keep_last: 30` planned from the catalog; the first lists the
#                     prefix whole for leftovers (none found: recorded), the second does not
#   all instances     `list --all-instances` (reads every other instance's manifest once)
#   GET /backups      the daemon's API, REQUESTS requests one after another once warm: p50
#                     and p99 latency
# Wall time and peak RSS come from `/usr/bin/time -f '%e %M'`; the daemon's peak RSS from
# its VmHWM. moto is a server of its own, started by bench/fleet-seed.py with the fleet
# already in its store (writing 180,000 objects through moto's API takes 23 minutes); it
# also prints how long one LIST page of moto takes at that size, which bounds a cold list.
# Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

INSTANCES=1000
DAYS=90
REQUESTS=1000
BIN=target/release/service-backup
ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --instances) INSTANCES=${2:?}; shift 2 ;;
    --days) DAYS=${2:?}; shift 2 ;;
    --requests) REQUESTS=${2:?}; shift 2 ;;
    --bin) BIN=${2:?}; shift 2 ;;
    --only) ONLY=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/fleet.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "bench/fleet.sh: no binary at $BIN (cargo build --release -p service-backup)" >&2; exit 2; }
BIN=$(realpath "$BIN")

SCRIPT=bench/fleet.sh
WORK_PREFIX=service-backup-fleet
# shellcheck source=tests/lib.sh
source tests/lib.sh

# shellcheck source=tests/servers/s3.sh
source tests/servers/s3.sh
s3_moto_ready || { echo "bench/fleet.sh: moto >= 5.2.5 is not installed (bash tests/run.sh installs it)" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
ME=inst-00007
BUCKET=fleet-$INSTANCES-$DAYS
TOKEN=bench-token-3f9a1c7e5b
printf '%s\n' "$TOKEN" > "$WORK/tokens"
chmod 600 "$WORK/tokens"
mkdir -p "$WORK/source"

seed() {
  local t0 n
  t0=$(date +%s.%N)
  n=$(python3 bench/fleet-seed.py "$@")
  log "seeded $n objects into $1 in $(echo "$(date +%s.%N) - $t0" | bc)s"
}

# A configuration of instance $ME with the destination $1 (yaml) and the API on port $2.
config() {
  cat > "$WORK/$3.yml" <<EOF
instance_id: $ME
source_folder: $WORK/source
state_dir: $WORK/state-$3
cron_schedule: "0 0 1 1 *"
retention: {keep_last: 30}
restore: {target_folder: $WORK/restored-$3}
destinations:
- $1
api:
  listen: 127.0.0.1:$2
  bearer_tokens_file: $WORK/tokens
EOF
}

ROWS=()
# Runs a command, timed; adds a row "what | seconds | peak RSS MiB".
measure() {
  local what=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || {
    log "$what failed:"; tail -5 "$WORK/err" >&2; ROWS+=("| $what | failed | |"); return 0; }
  read -r secs kb < "$WORK/time"
  ROWS+=("| $what | ${secs} s | $((kb / 1024)) MiB |")
  log "$what: ${secs}s, $((kb / 1024)) MiB ($(wc -l < "$WORK/out") lines out)"
}

# The daemon's API: REQUESTS GETs of /backups once warm; p50, p99 and the daemon's peak RSS.
api_latency() {
  local name=$1 port=$2
  "$BIN" run "$WORK/$name.yml" > "$WORK/daemon-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_for_port "$port" 60 "the agent's API"
  python3 - "$port" "$TOKEN" "$REQUESTS" "$ME" > "$WORK/latency" <<'PY'
import http.client, json, statistics, sys, time
port, token, n, me = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
def get():
    c.request("GET", "/backups", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, (r.status, body[:200])
    return json.loads(body)
first = get()  # warms the catalog (a state_dir the CLI already filled)
times = []
for _ in range(n):
    t = time.perf_counter(); b = get(); times.append(time.perf_counter() - t)
times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
print(f"{p(0.5):.1f} {p(0.99):.1f} {len(b['backups'])} {b.get('catalog_refreshed_at')}")
PY
  read -r p50 p99 count fresh < "$WORK/latency"
  local hwm
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  ROWS+=("| GET /backups warm, p50 / p99 of $REQUESTS | ${p50} / ${p99} ms | ${hwm} MiB (daemon) |")
  log "GET /backups: p50 ${p50} ms, p99 ${p99} ms, $count backups listed, catalog of $fresh"
}

bench_one() {
  local name=$1 dest=$2
  local port
  port=$(free_port)
  config "$dest" "$port" "$name"
  ROWS+=("| **$name, $INSTANCES instances x $DAYS days** | | |")
  measure "cold list (empty catalog)" "$BIN" list "$WORK/$name.yml"
  measure "warm list" "$BIN" list "$WORK/$name.yml"
  measure "restore latest" "$BIN" restore "$WORK/$name.yml" --force
  measure "prune --dry-run (keep_last 30)" "$BIN" prune "$WORK/$name.yml" --dry-run
  measure "prune --dry-run again" "$BIN" prune "$WORK/$name.yml" --dry-run
  api_latency "$name" "$port"
  measure "list --all-instances (first)" "$BIN" list "$WORK/$name.yml" --all-instances
  measure "list --all-instances (again)" "$BIN" list "$WORK/$name.yml" --all-instances
}

if [ "$ONLY" != s3 ]; then
  seed local "$WORK/local" "$INSTANCES" "$DAYS"
  bench_one local "{type: local, name: disk, config: {path: $WORK/local}}"
fi
if [ "$ONLY" != local ]; then
  port=$(free_port)
  t0=$(date +%s.%N)
  python3 bench/fleet-seed.py moto "$port" "$BUCKET" shared "$INSTANCES" "$DAYS" > "$WORK/moto.out" 2> "$WORK/moto.log" &
  PIDS+=($!)
  wait_for_port "$port" 1800 "moto with the fleet seeded"
  S3=http://127.0.0.1:$port
  log "moto serves $(head -1 "$WORK/moto.out") objects, seeded in $(echo "$(date +%s.%N) - $t0" | bc)s"
  python3 - "$S3" "$BUCKET" > "$WORK/page" <<'PY'
import boto3, sys, time
c = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
t = time.perf_counter()
c.list_objects_v2(Bucket=sys.argv[2], Prefix="shared/", MaxKeys=1000)
whole = time.perf_counter() - t
day = c.list_objects_v2(Bucket=sys.argv[2], Prefix="shared/", MaxKeys=1)["Contents"][0]["Key"].rsplit("/", 1)[0] + "/"
t = time.perf_counter()
c.list_objects_v2(Bucket=sys.argv[2], Prefix=day, MaxKeys=1000)
print(f"{whole:.2f} {time.perf_counter() - t:.2f}")
PY
  read -r page_whole page_day < "$WORK/page"
  ROWS+=("| moto: one LIST page of 1,000 keys, under the whole prefix / one day folder | ${page_whole} s / ${page_day} s | |")
  log "moto: one LIST page takes ${page_whole}s under the prefix, ${page_day}s in one day folder"
  bench_one s3 "{type: s3, name: moto, config: {bucket_name: $BUCKET, bucket_path: shared, endpoint_url: '$S3', region: us-east-1, access_key_id: bench, secret_access_key: bench-secret}}"
fi

echo
echo "| case | time | peak RSS |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
