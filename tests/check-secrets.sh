#!/usr/bin/env bash
# Fails when a configured secret appears in anything the test suite printed.
# usage: bash tests/check-secrets.sh DIR
#
# DIR holds what tests/run.sh and the test helpers collected: `secrets-*.log` (one secret
# per line: declared by the tests, and those of the test servers written by tests/run.sh)
# and every other `*.log` (the output of every run of the binary, and of `cargo test`).
# A multi-line secret (a private key) is declared line by line.
set -euo pipefail
dir=${1:?usage: bash tests/check-secrets.sh DIR}
patterns=$(mktemp)
trap 'rm -f "$patterns"' EXIT
# Lines short enough to occur by chance (PEM armour, short test values) are not secrets.
cat "$dir"/secrets-*.log 2>/dev/null | grep -v -- '-----' | awk 'length($0) >= 8' | sort -u >"$patterns" || true
count=$(wc -l <"$patterns")
if [ "$count" -eq 0 ]; then
  echo "check-secrets: no secret was declared in $dir: the collection is broken" >&2
  exit 2
fi
mapfile -t outputs < <(find "$dir" -maxdepth 1 -name '*.log' ! -name 'secrets-*' | sort)
if [ "${#outputs[@]}" -eq 0 ]; then
  echo "check-secrets: no output was collected in $dir" >&2
  exit 2
fi
if found=$(grep -F -n -f "$patterns" "${outputs[@]}"); then
  echo "check-secrets: a configured secret appears in the output of the tests:" >&2
  # Show where, never the secret itself.
  cut -d: -f1,2 <<<"$found" | sort -u | head -20 >&2
  exit 1
fi
echo "check-secrets: $count secrets, none in ${#outputs[@]} output files" >&2
