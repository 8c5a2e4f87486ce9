#!/usr/bin/env bash
# Builds the agent for release and adds it, stripped, to the BOSH release as the blob that
# packages/service-backup installs, so that `bosh create-release` works afterwards. Its debug
# information is kept beside the built binary as a separate file, which the blob names
# (.gnu_debuglink), for reading a core dump or a backtrace of a released build.
#
# usage: scripts/build-release-binary.sh [--binary FILE] [--debug-dir DIR]
#   --binary FILE    strip and add this already built x86_64 Linux binary instead of building
#                    one (FILE itself is left as it is)
#   --debug-dir DIR  where to write service-backup.debug (default: FILE's folder)
#
# With the bosh CLI on PATH the blob is added with `bosh add-blob`; without it, the file is
# copied to blobs/ and config/blobs.yml is written as `bosh add-blob` writes it.
# The binary links glibc dynamically: it must need no symbol version newer than the
# stemcell's glibc (Ubuntu Jammy stemcells have 2.35), or it would not start on the VM. The
# script refuses a binary that does (exit 1): build it on a system whose glibc is not newer.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB=service-backup/service-backup-linux-amd64
# The glibc of the Ubuntu Jammy stemcells.
STEMCELL_GLIBC=2.35
binary=""
debug_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a file}; shift 2 ;;
    --debug-dir) debug_dir=${2:?--debug-dir needs a folder}; shift 2 ;;
    *) echo "usage: $0 [--binary FILE] [--debug-dir DIR]" >&2; exit 2 ;;
  esac
done
for tool in objcopy objdump; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "$0: $tool is required (apt-get install binutils)" >&2; exit 2; }
done

if [ -z "$binary" ]; then
  cargo build --release --locked -p service-backup
  binary=${CARGO_TARGET_DIR:-target}/release/service-backup
fi
[ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 2; }
"$binary" --version

# The newest glibc symbol version the binary needs, from its version references.
glibc=$(objdump -p "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)
echo "it needs ${glibc:-no versioned glibc symbol} (Ubuntu Jammy stemcells: GLIBC_$STEMCELL_GLIBC)"
if [ -n "$glibc" ] &&
  [ "$(printf '%s\n' "GLIBC_$STEMCELL_GLIBC" "$glibc" | sort -V | tail -n 1)" != "GLIBC_$STEMCELL_GLIBC" ]; then
  echo "$0: $binary needs $glibc, newer than the stemcell's GLIBC_$STEMCELL_GLIBC: it would not start there; build it on a system with glibc $STEMCELL_GLIBC or older (Ubuntu 22.04)" >&2
  exit 1
fi

# The debug information goes to its own file; the blob keeps neither it nor the symbol
# table, and names the file (with its CRC) so that gdb finds it beside the binary.
debug_dir=${debug_dir:-$(dirname "$binary")}
mkdir -p "$debug_dir"
debug_file="$debug_dir/service-backup.debug"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
objcopy --only-keep-debug "$binary" "$debug_file"
objcopy --strip-all "$binary" "$work/service-backup"
(cd "$debug_dir" && objcopy --add-gnu-debuglink=service-backup.debug "$work/service-backup")
stripped="$work/service-backup"
echo "stripped: $(stat -c %s "$binary") → $(stat -c %s "$stripped") bytes; debug information in $debug_file"

if command -v bosh >/dev/null 2>&1; then
  bosh add-blob "$stripped" "$BLOB"
else
  mkdir -p "blobs/$(dirname "$BLOB")"
  cp "$stripped" "blobs/$BLOB"
  size=$(stat -c %s "blobs/$BLOB")
  sha=$(sha256sum "blobs/$BLOB" | cut -d ' ' -f 1)
  printf '%s:\n  size: %s\n  sha: sha256:%s\n' "$BLOB" "$size" "$sha" >config/blobs.yml
  echo "added blobs/$BLOB ($size bytes) to config/blobs.yml"
fi
echo "next: bosh create-release --force (a dev release), or upload the blob and create a final one; keep $debug_file with the release"
