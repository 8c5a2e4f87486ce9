# Azure Blob storage: Azurite, the storage emulator, from the npm registry.
# Sourced by tests/run.sh; tests/lib.sh provides WORK, PIDS, free_port,
# wait_for_port and apt_install.

# Azurite's well-known development account and key (published in Azurite's documentation;
# they open nothing but a local emulator).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

start_azure() {
  if ! command -v azurite-blob >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    npm install -g --no-audit --no-fund azurite@3 >/dev/null
  fi
  local port dir
  port=$(free_port)
  dir="$WORK/azurite"
  mkdir -p "$dir"
  # --loose: ignore headers Azurite does not know (the SDK asks for CRC64 of small
  # ranges); --skipApiVersionCheck: accept SDK API versions newer than Azurite;
  # --disableTelemetry: nothing leaves the machine; --silent: no access log.
  azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --location "$dir" \
    --skipApiVersionCheck --loose --disableTelemetry --silent >"$dir/azurite.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" 60 azure
  export SB_TEST_AZURE_ENDPOINT="http://127.0.0.1:$port/$AZURITE_ACCOUNT"
  export SB_TEST_AZURE_ACCOUNT="$AZURITE_ACCOUNT"
  export SB_TEST_AZURE_KEY="$AZURITE_KEY"
  # The fault tests start Azurite instances of their own, which they stop and restart.
  SB_TEST_AZURITE_BIN=$(command -v azurite-blob)
  export SB_TEST_AZURITE_BIN
}
