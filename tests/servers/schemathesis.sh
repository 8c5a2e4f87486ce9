# schemathesis (PyPI): property-based checks of the HTTP API against spec/openapi.yaml.
# Not a server: the API test starts the agent itself and runs schemathesis against it.
# Sourced by tests/run.sh; tests/lib.sh provides log.

start_schemathesis() {
  if ! command -v schemathesis >/dev/null 2>&1; then
    pip install -q 'schemathesis>=4,<5' ||
      pip install -q --break-system-packages 'schemathesis>=4,<5'
  fi
  SB_TEST_SCHEMATHESIS=$(command -v schemathesis)
  export SB_TEST_SCHEMATHESIS
}
