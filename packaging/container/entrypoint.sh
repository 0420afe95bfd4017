#!/bin/sh
# Starling's container entrypoint: all configuration from STARLING_* variables, JSON logs on stdout.
#
# Starling itself reads STARLING_CORE_<KEY>, STARLING_CONTROL_<KEY>, STARLING_DEFINE_<NAME> and
# STARLING_MODPARAM_<MODULE>_<PARAM> (README "Configuration"); this script only sets container
# defaults for the ones left unset, and takes two of its own:
#   STARLING_CONFIG   a TOML file to read first (mounted); checked with `starling config --check`
#   STARLING_BIN      the binary (default /usr/bin/starling; the tests run this script outside a container)
# Arguments: none runs the router; "ctl ...", "config ...", "check ..." etc. run that subcommand;
# anything starting with "-" is passed to `starling run`; any other command is executed as it is.
set -eu

bin=${STARLING_BIN:-/usr/bin/starling}

case "${1:-}" in
    ""|-*) ;;
    run) shift ;;
    ctl|config|check|parse|api|test|subscriber|version|help) exec "$bin" "$@" ;;
    *) exec "$@" ;;
esac

# Container defaults (each overridable by setting the variable).
: "${STARLING_CORE_LISTEN:=udp:0.0.0.0:5060,tcp:0.0.0.0:5060}"
: "${STARLING_CORE_SCRIPT:=/etc/starling/routes/default.lua}"
: "${STARLING_CORE_LOG_FORMAT:=json}"
# The control API (ctl, /metrics, /health) on loopback for the health check; to scrape metrics from
# outside, set STARLING_CONTROL_LISTEN=0.0.0.0:5065 and STARLING_CONTROL_TOKEN (Starling refuses a
# non-loopback control listener without a token).
: "${STARLING_CONTROL_LISTEN:=127.0.0.1:5065}"
: "${STARLING_MODPARAM_USRLOC_DB_URL:=sqlite:///var/lib/starling/starling.db}"
export STARLING_CORE_LISTEN STARLING_CORE_SCRIPT STARLING_CORE_LOG_FORMAT STARLING_CONTROL_LISTEN \
    STARLING_MODPARAM_USRLOC_DB_URL

set -- run "$@"
if [ -n "${STARLING_CONFIG:-}" ]; then
    # Every problem listed at once, exit 2, before anything binds.
    "$bin" config --check "$STARLING_CONFIG" >/dev/null
    set -- "$@" --config "$STARLING_CONFIG"
fi

# Log lines are written to standard error; a container's log is its standard output.
exec "$bin" "$@" 2>&1
