#!/usr/bin/env bash
# The benchmark: service-backup against a shell pipeline and restic, on the same data, in
# the same run, on this machine.
#
# usage: bash bench/run.sh [--size 1GiB|100MiB|10GiB] [--files N] [--single-file] [--runs 3]
#                          [--only REGEX]
#
#   --size   size of the generated data set (bench/make-data.py): half database-dump-like
#            text, a quarter incompressible binary, a quarter small files (default 1GiB)
#   --files  number of small files (default: make-data.py's, which grows with --size)
#   --runs   how many times each case runs; the table shows the median and min–max (default 3)
#   --single-file  the data set is one file of --size (database-dump-like text) instead
#   --only   run only the cases whose name matches this extended regex, e.g. '^sb_' for a
#            memory check of ours alone (rows then lack their comparisons: not for the table)
#
# It builds the release binary, makes the data set in a temporary folder, starts moto (S3)
# and sshd (SFTP) on 127.0.0.1 with tests/servers/, installs restic, openssl and the AWS
# CLI when missing, runs every case, prints a Markdown table and writes
# bench/results/<date>-<size>[-single-file][-<N>-files].json with a description of the machine. Everything it started
# is stopped and the temporary folder removed on exit, whatever happens.
#
# Cases (each backup reads the same folder; each restore writes a fresh folder):
#   service-backup   backup and restore, to `local`, to S3; backup to local + S3 + SFTP at once;
#                    backup and restore, to `local` and to S3, with the opt-in `compression: zstd`;
#                    restore to `local` on one decompression thread (SERVICE_BACKUP_RESTORE_THREADS=1,
#                    the path of before decompression ran on every core); one file of the
#                    set restored alone from S3 and from `local` (restore --include, through the
#                    archive's index); a restore from S3 killed (SIGKILL) once its checkpoint
#                    passed 90 % of the tar stream, and the restore that goes on, timed alone
#                    (bench/restore-resume.py)
#   moto             its own GET of our S3 archive, read and discarded (bench/s3-get.py): what
#                    the restore ← S3 rows are compared with; and its own GET of one 1 MiB range
#                    of it (bench/s3-range.py), what each ranged read of a selective restore costs
#   shell pipeline   tar -cf - . | gzip -6 | openssl enc -aes-256-cbc -pbkdf2 > file
#                    (and | aws s3 cp - s3://…), and the reverse for restore
#   restic           first backup into a new repository, local and on S3, and its restore
#   deflate limit    the blocks a gzip backup compresses (the data set's tar, 1 MiB blocks,
#                    the parts judged compressible), through libdeflate level 6 on every core
#                    and nothing else, timed in memory: the fastest a default backup can be
#                    here; the table says what fraction of it our backup reaches
#
# Wall time and peak RSS come from `/usr/bin/time -f '%e %M'` around each command; for a
# pipeline, the peak RSS is that of its largest process. MB/s is source bytes (10^6) per
# second of wall time. The data stays in the page cache, and restores write into /dev/shm
# when it has room: the figures are of the pipelines, not of the disk.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=1GiB
FILES=""
RUNS=3
SINGLE=""
ONLY=
while [ $# -gt 0 ]; do
  case $1 in
    --size) SIZE=${2:?--size needs a value}; shift 2 ;;
    --files) FILES=${2:?--files needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --single-file) SINGLE=1; shift ;;
    --only) ONLY=${2:?--only needs a value}; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: --runs must be a positive number" >&2; exit 2; }
[[ -z $FILES || $FILES =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: --files must be a positive number" >&2; exit 2; }

SCRIPT=bench/run.sh
WORK_PREFIX=service-backup-bench
# log, free_port, wait_for_port, apt_install, WORK, PIDS and the clean-up on exit.
# shellcheck source=tests/lib.sh
source tests/lib.sh

command -v cargo >/dev/null 2>&1 || { echo "bench/run.sh: cargo is required (install the Rust toolchain)" >&2; exit 2; }

# --- what it compares against --------------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
command -v openssl >/dev/null 2>&1 || apt_install openssl
command -v restic >/dev/null 2>&1 || apt_install restic
if ! command -v aws >/dev/null 2>&1 || ! aws --version >/dev/null 2>&1; then
  log "installing the AWS CLI"
  pip install -q awscli 2>/dev/null || pip install -q --break-system-packages awscli 2>/dev/null || true
  hash -r
fi
AWS_OK=""
if command -v aws >/dev/null 2>&1 && aws --version >/dev/null 2>&1; then AWS_OK=1; fi

# --- the binary ------------------------------------------------------------------------------
log "cargo build --release -p service-backup"
cargo build --release --locked -p service-backup
BIN=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/service-backup
[ -x "$BIN" ] || { echo "bench/run.sh: $BIN was not built" >&2; exit 1; }
# The deflate limit of a backup on this machine (crates/core/examples/deflate-limit.rs).
log "cargo build --release -p service-backup-core --example deflate-limit"
cargo build --release --locked -p service-backup-core --example deflate-limit
LIMIT=$(dirname "$BIN")/examples/deflate-limit

# --- the data set ------------------------------------------------------------------------------
DATA=$WORK/data
log "making $SIZE of data"
python3 bench/make-data.py "$DATA" --size "$SIZE" ${FILES:+--files "$FILES"} ${SINGLE:+--single-file}
# %.0f, not %d: mawk's %d stops at 2^31 - 1.
SRC_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
SRC_FILES=$(find "$DATA" -type f | wc -l)
log "data: $SRC_FILES files, $SRC_BYTES bytes"

# Restores write into memory (/dev/shm) when it has room for one and a half copies of the
# data: on ext4, a folder just emptied of the same ten thousand files makes the next restore
# measure the inode allocator (it skips inodes freed within the last minutes and searches
# further for each new file: the system time of a 1 GiB restore grew 6 → 14 s over four
# runs), not the tools. Each run still gets a fresh folder.
RESTORE_ROOT=$WORK
RESTORE_INTO="disk"
shm_free=$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ' || true)
if [[ ${shm_free:-0} =~ ^[0-9]+$ ]] && ((shm_free > SRC_BYTES * 3 / 2)); then
  RESTORE_ROOT=$(mktemp -d /dev/shm/service-backup-bench.XXXXXX)
  RESTORE_INTO="memory (tmpfs)"
  trap 'rm -rf "$RESTORE_ROOT"; cleanup' EXIT INT TERM
fi
RESTORED=$RESTORE_ROOT/restored
log "restores write into $RESTORE_INTO: $RESTORE_ROOT"

# --- servers ------------------------------------------------------------------------------------
# shellcheck source=tests/servers/s3.sh
source tests/servers/s3.sh
# shellcheck source=tests/servers/scp.sh
source tests/servers/scp.sh
log "starting s3"
start_s3
log "starting scp"
start_scp
S3=$SB_TEST_S3_ENDPOINT
# moto accepts any credentials.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
export RESTIC_PASSWORD=bench-password RESTIC_CACHE_DIR=$WORK/restic-cache

# Bytes stored under s3://$1/$2 (every object), from the bucket listing.
bucket_bytes() {
  python3 - "$S3" "$1" "${2:-}" <<'EOF'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
total = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]):
    total += sum(o["Size"] for o in page.get("Contents", []))
print(total)
EOF
}

# --- configurations of service-backup ------------------------------------------------------------
mkdir -p "$WORK/logs" "$WORK/out"
"$BIN" keygen --output "$WORK/backup.key" >/dev/null 2>&1
head -c 32 /dev/urandom | base64 >"$WORK/openssl.pass"

ssh_key_yaml=$(sed 's/^/      /' "$SB_TEST_SCP_KEY")
dest_local() {
  printf -- '- type: local\n  name: %s\n  config:\n    path: %s\n' "$1" "$2"
}
dest_s3() {
  cat <<EOF
- type: s3
  name: $1
  config:
    bucket_name: sb-bench
    bucket_path: $2
    access_key_id: bench
    secret_access_key: bench-secret
    endpoint_url: $S3
    region: us-east-1
EOF
}
dest_scp() {
  cat <<EOF
- type: scp
  name: $1
  config:
    server: 127.0.0.1
    port: $SB_TEST_SCP_PORT
    user: $SB_TEST_SCP_USER
    destination: $SB_TEST_SCP_DIR/bench
    fingerprint: "$SB_TEST_SCP_FINGERPRINT"
    key: |
$ssh_key_yaml
EOF
}
# A configuration named $1 whose destinations are the rest of the arguments' YAML; gzip at
# level 6, or what $COMPRESSION says (YAML lines).
write_config() {
  local name=$1
  shift
  {
    echo "destinations:"
    printf '%s\n' "$@"
    cat <<EOF
source_folder: $DATA
cron_schedule: "0 3 * * *"
deployment_name: bench
add_deployment_name_to_backup_path: true
encryption:
  key_file: $WORK/backup.key
${COMPRESSION:-compression_level: 6}
state_dir: $WORK/state-$name
EOF
  } >"$WORK/$name.yml"
}
write_config local "$(dest_local local "$WORK/out/sb-local")"
write_config s3 "$(dest_s3 s3 single)"
write_config fanout "$(dest_local local "$WORK/out/sb-fanout")" "$(dest_s3 s3 fanout)" "$(dest_scp sftp)"
COMPRESSION="compression: zstd" write_config zstd "$(dest_local local "$WORK/out/sb-zstd")"
COMPRESSION="compression: zstd" write_config s3-zstd "$(dest_s3 s3 zstd)"
"$BIN" validate "$WORK/local.yml" >/dev/null
"$BIN" validate "$WORK/zstd.yml" >/dev/null
"$BIN" validate "$WORK/fanout.yml" >/dev/null

# Stored bytes of the newest backup of configuration $1 on destination $2 (`list --json`).
sb_stored() {
  "$BIN" list "$WORK/$1.yml" --destination "$2" --json 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["stored_bytes"])'
}

# --- the cases -------------------------------------------------------------------------------------
# Each case is NAME|GROUP|TOOL: GROUP pairs rows for the ratios, TOOL is ours, pipeline or restic.
# `prep_NAME RUN` prepares a run (not timed), `cmd_NAME RUN` prints the command to time,
# `size_NAME` prints the stored bytes after the last run (empty when not applicable).
CASES=(
  "sb_backup_local|backup local|ours"
  "limit_deflate|backup local|limit"
  "pipe_backup_local|backup local|pipeline"
  "restic_backup_local|backup local|restic"
  "sb_backup_local_zstd|backup local|ours"
  "sb_backup_s3|backup S3|ours"
  "pipe_backup_s3|backup S3|pipeline"
  "restic_backup_s3|backup S3|restic"
  "sb_backup_s3_zstd|backup S3|ours"
  "sb_backup_fanout|backup local+S3+SFTP|ours"
  "sb_restore_local|restore local|ours"
  "sb_restore_local_1thread|restore local|ours"
  "pipe_restore_local|restore local|pipeline"
  "restic_restore_local|restore local|restic"
  "sb_restore_local_zstd|restore local|ours"
  "sb_restore_s3|restore S3|ours"
  "server_get_s3|restore S3|server"
  "sb_restore_resume_s3|restore S3|ours"
  "pipe_restore_s3|restore S3|pipeline"
  "restic_restore_s3|restore S3|restic"
  "sb_restore_s3_zstd|restore S3|ours"
  "sb_restore_one_file_s3|restore one file S3|ours"
  "server_range_s3|restore one file S3|server"
  "sb_restore_one_file_local|restore one file local|ours"
)
declare -A LABEL=(
  [sb_backup_local]="service-backup backup → local"
  [limit_deflate]="deflate limit: libdeflate 6 on every core, compressible blocks only"
  [pipe_backup_local]="tar | gzip -6 | openssl enc → file"
  [restic_backup_local]="restic backup → local repo (first)"
  [sb_backup_local_zstd]="service-backup backup → local, compression: zstd"
  [sb_backup_s3]="service-backup backup → S3"
  [pipe_backup_s3]="tar | gzip -6 | openssl enc | aws s3 cp"
  [restic_backup_s3]="restic backup → S3 repo (first)"
  [sb_backup_s3_zstd]="service-backup backup → S3, compression: zstd"
  [sb_backup_fanout]="service-backup backup → local + S3 + SFTP"
  [sb_restore_local]="service-backup restore ← local"
  [sb_restore_local_1thread]="service-backup restore ← local, one decompression thread"
  [pipe_restore_local]="openssl enc -d | gzip -d | tar -x ← file"
  [restic_restore_local]="restic restore ← local repo"
  [sb_restore_local_zstd]="service-backup restore ← local, compression: zstd"
  [sb_restore_s3]="service-backup restore ← S3"
  [server_get_s3]="moto's own GET of that archive, read and discarded"
  [sb_restore_resume_s3]="service-backup restore ← S3 killed at 90 %: the restore that goes on"
  [pipe_restore_s3]="aws s3 cp | openssl enc -d | gzip -d | tar -x"
  [restic_restore_s3]="restic restore ← S3 repo"
  [sb_restore_s3_zstd]="service-backup restore ← S3, compression: zstd"
  [sb_restore_one_file_s3]="service-backup restore --include one file ← S3"
  [server_range_s3]="moto's own GET of 1 MiB from the middle of that archive"
  [sb_restore_one_file_local]="service-backup restore --include one file ← local"
)
OPENSSL="openssl enc -aes-256-cbc -pbkdf2 -pass file:$WORK/openssl.pass"
AWS="aws --endpoint-url $S3"
RESTIC_S3="s3:$S3/restic-bench"
fresh() { rm -rf "$1"; mkdir -p "$1"; }

prep_sb_backup_local() { :; }
cmd_sb_backup_local() { echo "$BIN backup $WORK/local.yml"; }
size_sb_backup_local() { sb_stored local local; }

# The limit: the data set as one tar file (made once, not timed), whose blocks the example
# compresses in memory; its wall time is the compression's alone, as the example measures.
prep_limit_deflate() { [ -f "$WORK/data.tar" ] || tar -C "$DATA" -cf "$WORK/data.tar" .; }
cmd_limit_deflate() { echo "$LIMIT $WORK/data.tar 6"; }
wall_limit_deflate() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1"; }
size_limit_deflate() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["deflated_to"] + d["stored_bytes"])' \
    "$WORK/logs/limit_deflate-$RUNS.log"
}

prep_pipe_backup_local() { rm -f "$WORK/out/pipe.tar.gz.enc"; }
cmd_pipe_backup_local() { echo "tar -C $DATA -cf - . | gzip -6 | $OPENSSL >$WORK/out/pipe.tar.gz.enc"; }
size_pipe_backup_local() { stat -c %s "$WORK/out/pipe.tar.gz.enc"; }

prep_restic_backup_local() { rm -rf "$WORK/out/restic"; restic -q -r "$WORK/out/restic" init >/dev/null; }
cmd_restic_backup_local() { echo "cd $DATA && restic -q -r $WORK/out/restic backup ."; }
size_restic_backup_local() { du -sb "$WORK/out/restic" | cut -f1; }

prep_sb_backup_local_zstd() { :; }
cmd_sb_backup_local_zstd() { echo "$BIN backup $WORK/zstd.yml"; }
size_sb_backup_local_zstd() { sb_stored zstd local; }

prep_sb_backup_s3() { :; }
cmd_sb_backup_s3() { echo "$BIN backup $WORK/s3.yml"; }
size_sb_backup_s3() { sb_stored s3 s3; }

prep_pipe_backup_s3() { [ "$1" -gt 1 ] || $AWS s3 mb s3://pipe-bench >/dev/null; }
cmd_pipe_backup_s3() {
  echo "tar -C $DATA -cf - . | gzip -6 | $OPENSSL | $AWS s3 cp --only-show-errors - s3://pipe-bench/pipe.tar.gz.enc"
}
size_pipe_backup_s3() {
  $AWS s3 ls --summarize --recursive s3://pipe-bench/ | awk '/Total Size:/ {print $3}'
}

prep_restic_backup_s3() { restic -q -r "$RESTIC_S3/run$1" init >/dev/null; }
cmd_restic_backup_s3() { echo "cd $DATA && restic -q -r $RESTIC_S3/run$1 backup ."; }
size_restic_backup_s3() { bucket_bytes restic-bench "run$RUNS/"; }

prep_sb_backup_s3_zstd() { :; }
cmd_sb_backup_s3_zstd() { echo "$BIN backup $WORK/s3-zstd.yml"; }
size_sb_backup_s3_zstd() { sb_stored s3-zstd s3; }

prep_sb_backup_fanout() { :; }
cmd_sb_backup_fanout() { echo "$BIN backup $WORK/fanout.yml"; }
size_sb_backup_fanout() { sb_stored fanout local; }

prep_sb_restore_local() { rm -rf "$RESTORED"; }
cmd_sb_restore_local() { echo "$BIN restore $WORK/local.yml --destination local --target $RESTORED --force"; }
size_sb_restore_local() { :; }

prep_sb_restore_local_1thread() { rm -rf "$RESTORED"; }
cmd_sb_restore_local_1thread() {
  echo "env SERVICE_BACKUP_RESTORE_THREADS=1 $BIN restore $WORK/local.yml --destination local --target $RESTORED --force"
}
size_sb_restore_local_1thread() { :; }

prep_pipe_restore_local() { fresh "$RESTORED"; }
cmd_pipe_restore_local() { echo "$OPENSSL -d <$WORK/out/pipe.tar.gz.enc | gzip -dc | tar -C $RESTORED -xf -"; }
size_pipe_restore_local() { :; }

prep_restic_restore_local() { rm -rf "$RESTORED"; }
cmd_restic_restore_local() { echo "restic -q -r $WORK/out/restic restore latest --target $RESTORED"; }
size_restic_restore_local() { :; }

prep_sb_restore_local_zstd() { rm -rf "$RESTORED"; }
cmd_sb_restore_local_zstd() { echo "$BIN restore $WORK/zstd.yml --destination local --target $RESTORED --force"; }
size_sb_restore_local_zstd() { :; }

prep_sb_restore_s3() { rm -rf "$RESTORED"; }
cmd_sb_restore_s3() { echo "$BIN restore $WORK/s3.yml --destination s3 --target $RESTORED --force"; }
size_sb_restore_s3() { :; }

# The server's share of a restore from S3: one GET of the same archive (bench/s3-get.py),
# its wall time alone as the script measures it.
prep_server_get_s3() { :; }
cmd_server_get_s3() { echo "python3 bench/s3-get.py $S3 sb-bench single/"; }
wall_server_get_s3() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1"; }
size_server_get_s3() { :; }

# A restore killed (SIGKILL) once its checkpoint passed 90 % of the tar stream, then the
# restore that goes on from the checkpoint, timed alone (bench/restore-resume.py).
prep_sb_restore_resume_s3() { rm -rf "$RESTORED"; }
cmd_sb_restore_resume_s3() {
  echo "python3 bench/restore-resume.py $BIN $WORK/s3.yml s3 $RESTORED $WORK/state-s3 $SRC_BYTES 0.9"
}
wall_sb_restore_resume_s3() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1"; }
size_sb_restore_resume_s3() { :; }

prep_pipe_restore_s3() { fresh "$RESTORED"; }
cmd_pipe_restore_s3() {
  echo "$AWS s3 cp --only-show-errors s3://pipe-bench/pipe.tar.gz.enc - | $OPENSSL -d | gzip -dc | tar -C $RESTORED -xf -"
}
size_pipe_restore_s3() { :; }

prep_restic_restore_s3() { rm -rf "$RESTORED"; }
cmd_restic_restore_s3() { echo "restic -q -r $RESTIC_S3/run$RUNS restore latest --target $RESTORED"; }
size_restic_restore_s3() { :; }

prep_sb_restore_s3_zstd() { rm -rf "$RESTORED"; }
cmd_sb_restore_s3_zstd() { echo "$BIN restore $WORK/s3-zstd.yml --destination s3 --target $RESTORED --force"; }
size_sb_restore_s3_zstd() { :; }

# One file of the data set (small/001/f0000001: random bytes, a quarter of the set divided
# among the small files), restored alone through the archive's index.
ONE_FILE=small/001/f0000001
prep_sb_restore_one_file_s3() { rm -rf "$RESTORED"; }
cmd_sb_restore_one_file_s3() {
  echo "$BIN restore $WORK/s3.yml --destination s3 --target $RESTORED --force --include $ONE_FILE"
}
size_sb_restore_one_file_s3() { :; }

# What one ranged read of the archive costs the S3 server itself (bench/s3-range.py).
prep_server_range_s3() { :; }
cmd_server_range_s3() { echo "python3 bench/s3-range.py $S3 sb-bench single/"; }
wall_server_range_s3() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1"; }
size_server_range_s3() { :; }

prep_sb_restore_one_file_local() { rm -rf "$RESTORED"; }
cmd_sb_restore_one_file_local() {
  echo "$BIN restore $WORK/local.yml --destination local --target $RESTORED --force --include $ONE_FILE"
}
size_sb_restore_one_file_local() { :; }

# Files restored into $RESTORED, checked against the source after each restore.
restored_files() { find "$RESTORED" -type f -not -path '*/.*' | wc -l; }

# --- running them --------------------------------------------------------------------------------
RESULTS=$WORK/results.tsv # name, group, tool, label, walls, rss KiB, stored bytes, status
: >"$RESULTS"
for entry in "${CASES[@]}"; do
  IFS='|' read -r name group tool <<<"$entry"
  label=${LABEL[$name]}
  if [[ -n $ONLY && ! $name =~ $ONLY ]]; then continue; fi
  if [[ $name == pipe_*_s3 && -z $AWS_OK ]]; then
    log "$label: not available (the AWS CLI could not be installed)"
    printf '%s\t%s\t%s\t%s\t\t\t\tnot available\n' "$name" "$group" "$tool" "$label" >>"$RESULTS"
    continue
  fi
  walls=() rss=0
  for ((run = 1; run <= RUNS; run++)); do
    "prep_$name" "$run"
    # Each run starts with no dirty pages of an earlier one still being written back.
    sync
    cmd=$("cmd_$name" "$run")
    logfile=$WORK/logs/$name-$run.log
    if ! /usr/bin/time -f '%e %M' -o "$WORK/time.txt" bash -o pipefail -c "$cmd" >"$logfile" 2>&1; then
      echo "bench/run.sh: $label failed (run $run): $cmd" >&2
      tail -n 20 "$logfile" >&2
      exit 1
    fi
    read -r wall kib < <(tail -n 1 "$WORK/time.txt")
    # A case that times only part of its command says how long that part took.
    if declare -F "wall_$name" >/dev/null; then wall=$("wall_$name" "$logfile"); fi
    walls+=("$wall")
    if ((kib > rss)); then rss=$kib; fi
    if [[ $name == *resume* ]]; then
      log "$label: $(cat "$logfile")"
      cp "$logfile" "$WORK/resume.json"
    fi
    if [[ $name == *restore* && $tool != server ]]; then
      got=$(restored_files) want=$SRC_FILES
      if [[ $name == *one_file* ]]; then
        want=1
        fetched=$(grep -o 'fetched [0-9]* bytes' "$logfile" | grep -o '[0-9]*' | tail -n 1)
        log "$label: fetched $fetched bytes of the archive"
        [[ $name != *_s3 ]] || echo "$fetched" >"$WORK/one-file-fetched"
      fi
      if [ "$got" -ne "$want" ]; then
        echo "bench/run.sh: $label restored $got files, not $want" >&2
        exit 1
      fi
    fi
    log "$label: run $run/$RUNS ${wall}s, ${kib} KiB peak"
  done
  stored=$("size_$name")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\tok\n' "$name" "$group" "$tool" "$label" "${walls[*]}" "$rss" "$stored" >>"$RESULTS"
done

# --- the S3 server's own share ---------------------------------------------------------------------
# How long moto takes to complete a multipart upload of the size our S3 backup stored, timed
# alone: a backup waits for that request at its very end, and real S3 answers it at once.
S3_COMPLETE=""
ONE_FILE_FETCHED=$(cat "$WORK/one-file-fetched" 2>/dev/null || true)
RESUMED_FROM=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["from_byte"])' \
  "$WORK/resume.json" 2>/dev/null || true)
S3_ARCHIVE=$(python3 bench/s3-get.py "$S3" sb-bench single/ 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes"])' 2>/dev/null || true)
S3_STORED=$(awk -F'\t' '$1 == "sb_backup_s3" && $8 == "ok" {print $7}' "$RESULTS")
if [[ -n $S3_STORED ]]; then
  S3_COMPLETE=$(python3 bench/s3-complete.py "$S3" sb-bench "$S3_STORED")
  log "moto completes a multipart upload of $S3_STORED bytes in ${S3_COMPLETE}s (timed alone)"
fi

# --- the table and the JSON ----------------------------------------------------------------------
mkdir -p bench/results
OUT=bench/results/$(date -u +%Y-%m-%d)-$SIZE${SINGLE:+-single-file}${FILES:+-$FILES-files}.json
# The values go in as arguments: none of them becomes program text.
python3 bench/report.py collect "$RESULTS" "$OUT" \
  --size="$SIZE" ${SINGLE:+--single-file} --only="$ONLY" \
  --source-bytes="$SRC_BYTES" --source-files="$SRC_FILES" --runs="$RUNS" \
  --restores-into="$RESTORE_INTO" ${S3_COMPLETE:+--s3-complete="$S3_COMPLETE"} \
  ${ONE_FILE_FETCHED:+--one-file-fetched="$ONE_FILE_FETCHED"} ${S3_ARCHIVE:+--s3-archive-bytes="$S3_ARCHIVE"} \
  ${RESUMED_FROM:+--resumed-from="$RESUMED_FROM"} \
  --service-backup="$("$BIN" --version 2>/dev/null | head -n 1)" \
  --restic="$(restic version | head -n 1)" \
  --openssl="$(openssl version)"
echo
log "results written to $OUT"
