# OpenSSH's sshd on 127.0.0.1, for the `scp` destination (SFTP). Sourced by tests/run.sh and
# bench/run.sh, with the helpers of tests/lib.sh.
#
# Exports:
#   SB_TEST_SCP_PORT, SB_TEST_SCP_USER      where to connect, as whom (the current user)
#   SB_TEST_SCP_KEY                         an ed25519 client key (OpenSSH format), authorized
#   SB_TEST_SCP_KEY_RSA_PEM, SB_TEST_SCP_KEY_ECDSA   more authorized client keys
#   SB_TEST_SCP_KEY_UNAUTHORIZED            a key the server does not accept
#   SB_TEST_SCP_FINGERPRINT                 the ed25519 host key, as `ssh-keygen -l` prints it
#   SB_TEST_SCP_FINGERPRINT_MD5             the same key, in the older MD5 form
#   SB_TEST_SCP_FINGERPRINT_RSA             the server's second host key (RSA)
#   SB_TEST_SCP_KNOWN_HOSTS                 the ed25519 host key as a known_hosts line
#   SB_TEST_SCP_DIR                         a directory the tests may write under
#   SB_TEST_SCP_SSHD, SB_TEST_SCP_HOST_KEYS, SB_TEST_SCP_AUTHORIZED_KEYS
#                                           for tests that start (and stop) their own sshd

start_scp() {
  if [ ! -x /usr/sbin/sshd ]; then
    apt_install openssh-server
  fi
  # ssh2 builds libssh2 against the system OpenSSL and zlib.
  local pkg missing=()
  for pkg in libssl-dev pkg-config zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
  mkdir -p /run/sshd

  local dir="$WORK/sshd" port
  port=$(free_port)
  mkdir -p "$dir/data"
  ssh-keygen -q -t ed25519 -N '' -C test-host -f "$dir/host_ed25519"
  ssh-keygen -q -t rsa -b 2048 -N '' -C test-host -f "$dir/host_rsa"
  ssh-keygen -q -t ed25519 -N '' -C test-client -f "$dir/client_ed25519"
  ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -C test-client -f "$dir/client_rsa_pem"
  ssh-keygen -q -t ecdsa -b 256 -N '' -C test-client -f "$dir/client_ecdsa"
  ssh-keygen -q -t ed25519 -N '' -C test-stranger -f "$dir/stranger_ed25519"
  cat "$dir/client_ed25519.pub" "$dir/client_rsa_pem.pub" "$dir/client_ecdsa.pub" \
    >"$dir/authorized_keys"
  cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
HostKey $dir/host_rsa
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $dir/sshd.pid
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" &
  PIDS+=($!)
  wait_for_port "$port" 20 scp

  export SB_TEST_SCP_PORT=$port
  export SB_TEST_SCP_USER
  SB_TEST_SCP_USER=$(id -un)
  export SB_TEST_SCP_KEY=$dir/client_ed25519
  export SB_TEST_SCP_KEY_RSA_PEM=$dir/client_rsa_pem
  export SB_TEST_SCP_KEY_ECDSA=$dir/client_ecdsa
  export SB_TEST_SCP_KEY_UNAUTHORIZED=$dir/stranger_ed25519
  export SB_TEST_SCP_FINGERPRINT SB_TEST_SCP_FINGERPRINT_MD5 SB_TEST_SCP_FINGERPRINT_RSA
  SB_TEST_SCP_FINGERPRINT=$(ssh-keygen -l -f "$dir/host_ed25519.pub" | cut -d' ' -f2)
  SB_TEST_SCP_FINGERPRINT_MD5=$(ssh-keygen -l -E md5 -f "$dir/host_ed25519.pub" | cut -d' ' -f2)
  SB_TEST_SCP_FINGERPRINT_RSA=$(ssh-keygen -l -f "$dir/host_rsa.pub" | cut -d' ' -f2)
  export SB_TEST_SCP_KNOWN_HOSTS
  SB_TEST_SCP_KNOWN_HOSTS="[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")"
  export SB_TEST_SCP_DIR=$dir/data
  export SB_TEST_SCP_SSHD=/usr/sbin/sshd
  export SB_TEST_SCP_HOST_KEYS=$dir/host_ed25519:$dir/host_rsa
  export SB_TEST_SCP_AUTHORIZED_KEYS=$dir/authorized_keys
}
