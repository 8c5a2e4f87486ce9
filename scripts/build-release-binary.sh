#!/usr/bin/env bash
# Builds the agent for release and adds it to the BOSH release as the blob that
# packages/service-backup installs, so that `bosh create-release` works afterwards.
#
# usage: scripts/build-release-binary.sh [--binary FILE]
#   --binary FILE   add this already built x86_64 Linux binary instead of building one
#
# With the bosh CLI on PATH the blob is added with `bosh add-blob`; without it, the file is
# copied to blobs/ and config/blobs.yml is written as `bosh add-blob` writes it.
# The binary links glibc dynamically: build it on a system whose glibc is not newer than
# the stemcell's (Ubuntu Jammy stemcells have 2.35); the script prints what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB=service-backup/service-backup-linux-amd64
binary=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a file}; shift 2 ;;
    *) echo "usage: $0 [--binary FILE]" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  cargo build --release --locked -p service-backup
  binary=${CARGO_TARGET_DIR:-target}/release/service-backup
fi
[ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 2; }
"$binary" --version

if command -v objdump >/dev/null 2>&1; then
  glibc=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
  echo "it needs ${glibc:-no versioned glibc symbol} (Ubuntu Jammy stemcells: GLIBC_2.35)"
fi

if command -v bosh >/dev/null 2>&1; then
  bosh add-blob "$binary" "$BLOB"
else
  mkdir -p "blobs/$(dirname "$BLOB")"
  cp "$binary" "blobs/$BLOB"
  size=$(stat -c %s "blobs/$BLOB")
  sha=$(sha256sum "blobs/$BLOB" | cut -d ' ' -f 1)
  printf '%s:\n  size: %s\n  sha: sha256:%s\n' "$BLOB" "$size" "$sha" >config/blobs.yml
  echo "added blobs/$BLOB ($size bytes) to config/blobs.yml"
fi
echo "next: bosh create-release --force (a dev release), or upload the blob and create a final one"
