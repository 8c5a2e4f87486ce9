# S3: moto's S3 server, twice on loopback: plain HTTP, and HTTPS with a certificate of a
# private CA made here (for the `ca_cert` test). moto accepts any credentials.
# Sourced by tests/run.sh and bench/run.sh; tests/lib.sh provides log, free_port,
# wait_for_port, apt_install, WORK and PIDS.

# Whether moto's server, at least 5.2.5, is installed (5.2.1 answers
# CompleteMultipartUpload with an XML root the S3 SDK refuses).
s3_moto_ready() {
  command -v moto_server >/dev/null 2>&1 || return 1
  python3 - <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import flask, flask_cors  # the [server] extra
parts = [int(p) for p in version("moto").split(".")[:3] if p.isdigit()]
sys.exit(0 if parts >= [5, 2, 5] else 1)
EOF
}

# moto 5.2.6 keeps the Object Lock headers of a plain PutObject (and applies a bucket's
# default retention to it), but drops them on a multipart upload, which is how the agent
# writes archives; S3 applies them to both. tests/servers/moto-object-lock.patch makes
# CreateMultipartUpload remember the lock (or the bucket's default retention) and
# CompleteMultipartUpload put it on the object. Applied once to the installed moto
# (`patch --dry-run -R` tells that it is there); a moto the patch no longer fits stops
# the run, rather than tests passing on objects that are not locked.
s3_patch_moto() {
  local patch_file site
  patch_file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/moto-object-lock.patch"
  site=$(python3 -c 'import moto, os; print(os.path.dirname(os.path.dirname(moto.__file__)))') ||
    { echo "tests/run.sh: cannot find the installed moto" >&2; return 1; }
  command -v patch >/dev/null 2>&1 || apt_install patch
  if patch -d "$site" -p1 -R --dry-run --silent <"$patch_file" >/dev/null 2>&1; then
    return 0
  fi
  if ! patch -d "$site" -p1 --dry-run --silent <"$patch_file" >/dev/null 2>&1; then
    echo "tests/run.sh: tests/servers/moto-object-lock.patch does not apply to moto $(python3 -c 'from importlib.metadata import version; print(version("moto"))') in $site;" \
      "update the patch for this moto (or drop it if this moto keeps the Object Lock of multipart uploads)" >&2
    return 1
  fi
  log "patching moto: Object Lock on multipart uploads"
  patch -d "$site" -p1 --silent <"$patch_file" >/dev/null
}

# A CA, and a certificate it signed for 127.0.0.1, in $1.
s3_make_certificates() {
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=service-backup test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 3 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}

start_s3() {
  if ! s3_moto_ready; then
    log "installing moto"
    pip install -q 'moto[server]>=5.2.5' ||
      pip install -q --break-system-packages 'moto[server]>=5.2.5'
    hash -r
    s3_moto_ready || { echo "tests/run.sh: moto_server >= 5.2.5 is not usable after installing it" >&2; return 1; }
  fi
  s3_patch_moto || return 1
  command -v openssl >/dev/null 2>&1 || apt_install openssl

  local dir=$WORK/s3 port tls_port
  mkdir -p "$dir"
  port=$(free_port)
  (cd "$dir" && exec moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1) &
  PIDS+=($!)

  s3_make_certificates "$dir"
  tls_port=$(free_port)
  (cd "$dir" && exec moto_server -H 127.0.0.1 -p "$tls_port" -c "$dir/server.pem" -k "$dir/server.key" \
    >"$dir/moto-tls.log" 2>&1) &
  PIDS+=($!)

  wait_for_port "$port" 60 s3
  wait_for_port "$tls_port" 60 "s3 (TLS)"

  export SB_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export SB_TEST_S3_TLS_ENDPOINT="https://127.0.0.1:$tls_port"
  export SB_TEST_S3_CA_CERT="$dir/ca.pem"
  # For the tests that stop a server: they start their own from this program.
  SB_TEST_MOTO_SERVER=$(command -v moto_server)
  export SB_TEST_MOTO_SERVER
}
