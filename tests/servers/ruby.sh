# Ruby, for the test that renders the BOSH job's ERB templates as the director does
# (tests/bosh/render.rb). Not a server: start_ruby installs Debian's ruby when it is
# missing and exports its path. Sourced by tests/run.sh; tests/lib.sh provides
# apt_install and log.

start_ruby() {
  if ! command -v ruby >/dev/null 2>&1; then
    log "installing ruby"
    apt_install ruby
    hash -r
  fi
  command -v ruby >/dev/null 2>&1 || { echo "tests/run.sh: ruby is not usable after installing it" >&2; return 1; }
  SB_TEST_RUBY=$(command -v ruby)
  export SB_TEST_RUBY
}
