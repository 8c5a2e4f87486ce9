# libfaketime (Debian's `libfaketime`): the fault tests preload it into the agent to set its
# clock back while it runs. Sourced by tests/run.sh; tests/lib.sh provides log and apt_install.

# The path of libfaketime.so.1 that Debian installs, if it is there.
faketime_library() {
  local lib
  for lib in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    if [ -f "$lib" ]; then
      echo "$lib"
      return 0
    fi
  done
  return 1
}

start_faketime() {
  if ! faketime_library >/dev/null; then
    log "installing libfaketime"
    apt_install libfaketime
  fi
  SB_TEST_LIBFAKETIME=$(faketime_library) ||
    { echo "tests/run.sh: libfaketime.so.1 is missing after installing libfaketime" >&2; return 1; }
  export SB_TEST_LIBFAKETIME
}
