# Headless Chromium (Debian's package) and playwright-core (npm; it downloads no browser)
# for the dashboard page's browser test. Not a server: the test starts the agent and the
# browser itself. Sourced by tests/run.sh; tests/lib.sh provides log and apt_install.

start_chromium() {
  command -v chromium >/dev/null 2>&1 || apt_install --no-install-recommends chromium
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  # Kept out of $WORK so that later runs reuse it.
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/service-backup-tests/node"
  if [ ! -d "$dir/node_modules/playwright-core" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-fund --no-audit playwright-core@1)
  fi
  SB_TEST_CHROMIUM=$(command -v chromium)
  SB_TEST_PLAYWRIGHT="$dir/node_modules"
  export SB_TEST_CHROMIUM SB_TEST_PLAYWRIGHT
}
