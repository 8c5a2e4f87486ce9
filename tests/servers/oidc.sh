# An OpenID Connect provider (the npm package oidc-provider, run by tests/servers/oidc.mjs),
# whose JWT access tokens the API's platform-token tests (api.uaa) check. Sourced by
# tests/run.sh; tests/lib.sh provides WORK, PIDS, free_port, wait_for_port, apt_install.
#
# Exports SB_TEST_OIDC_ISSUER (the issuer, http://127.0.0.1:PORT: tokens at /token, keys at
# /jwks; see oidc.mjs for its clients, resources and test routes).

start_oidc() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm"
    apt_install nodejs npm
    hash -r
  fi
  local dir="$WORK/oidc" port i
  mkdir -p "$dir"
  # The script is run from its own folder, where Node resolves the installed package.
  cp "$(dirname "${BASH_SOURCE[0]}")/oidc.mjs" "$dir/"
  (cd "$dir" && npm install --silent --no-audit --no-fund 'oidc-provider@9' >"$dir/npm.log" 2>&1) || {
    cat "$dir/npm.log" >&2
    echo "$SCRIPT: npm could not install oidc-provider" >&2
    return 1
  }
  port=$(free_port)
  (cd "$dir" && exec node oidc.mjs "$port") >"$dir/oidc.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" 30 oidc
  for ((i = 0; i < 100; i++)); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/jwks', timeout=2)" \
      2>/dev/null && break
    sleep 0.1
  done
  ((i < 100)) || { echo "$SCRIPT: oidc-provider does not answer GET /jwks" >&2; return 1; }
  export SB_TEST_OIDC_ISSUER="http://127.0.0.1:$port"
}
