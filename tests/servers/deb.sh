# cargo-deb (from crates.io), dpkg-dev and systemd-analyze, for the test that builds the
# Debian package, installs it and runs it (crates/agent/tests/deb_package.rs). Not a
# server: start_deb installs what is missing and exports SB_TEST_CARGO_DEB. Sourced by tests/run.sh;
# tests/lib.sh provides apt_install and log.

# The version the package metadata was written for.
DEB_CARGO_DEB_VERSION=3.8.0

start_deb() {
  command -v dpkg-shlibdeps >/dev/null 2>&1 || apt_install dpkg-dev
  command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
  local bin
  bin=$(command -v cargo-deb || true)
  if [ -z "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$DEB_CARGO_DEB_VERSION"; then
    log "installing cargo-deb $DEB_CARGO_DEB_VERSION (a few minutes, once)"
    cargo install --quiet --locked cargo-deb --version "$DEB_CARGO_DEB_VERSION"
    hash -r
    bin=$(command -v cargo-deb || true)
  fi
  [ -n "$bin" ] || { echo "tests/run.sh: cargo-deb is not on PATH after installing it (is ~/.cargo/bin on PATH?)" >&2; return 1; }
  SB_TEST_CARGO_DEB=$bin
  export SB_TEST_CARGO_DEB
}
