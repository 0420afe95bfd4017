# Sourced (not run) by bench/redis-register.sh, bench/redis-sweep.sh and bench/usrloc-lookup.sh: the
# Starling binary, the tool check, a throwaway redis-server, CPU readers and the clean-up of every
# process started. The sourcing script has already done `set -euo pipefail`.
# Sets: root (the checkout), starling (STARLING_BIN, default .build/release/starling, else
# .build/debug/starling), hz, pids (append every background process's pid: the EXIT trap kills its
# process group); start_redis sets work and rpid.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$(basename "$0")"
starling="${STARLING_BIN:-}"
if [[ -z "$starling" ]]; then
  starling="$root/.build/release/starling"; [[ -x "$starling" ]] || starling="$root/.build/debug/starling"
fi
hz=$(getconf CLK_TCK)

require_tools() {  # TOOL...
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$bench: $tool is missing (run scripts/install-deps.sh)" >&2; exit 2; }
  done
}
require_starling() { [[ -x "$starling" ]] || { echo "$bench: starling binary $starling missing (swift build -c release)" >&2; exit 2; }; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_redis PREFIX: a work directory /tmp/PREFIX.XXXXXX ($work) and a redis-server without persistence
# on 127.0.0.1:$RPORT ($rpid) in it; returns once it answers PING (5 s at most).
start_redis() {
  work="$(mktemp -d "/tmp/$1.XXXXXX")"
  setsid redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --logfile "" --dir "$work" >/dev/null 2>&1 & pids+=("$!")
  rpid=$!
  for _ in $(seq 50); do redis-cli -p "$RPORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
}

# CPU ticks (user + system) of every process in session $1: Kamailio forks its children into it.
cpu_sid() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed 's/^.*) //' | awk -v s="$1" '$4 == s { t += $12 + $13 } END { print t + 0 }'; }
redis_cpu() { awk '{ print $14 + $15 }' "/proc/$rpid/stat"; }
# wait_udp [TRIES]: until something listens on udp 127.0.0.1:$SPORT (TRIES x 0.1 s, default 100).
wait_udp() {
  for _ in $(seq "${1:-100}"); do ss -uln | grep -q "127.0.0.1:$SPORT " && return 0; sleep 0.1; done
  echo "server did not bind $SPORT" >&2; exit 1
}

# Kamailio 5.6 with usrloc on db_redis: kamailio_mpath sets mpath (the module directory holding
# db_redis.so and app_lua.so); kamailio_redis_usrloc prints the db_redis and usrloc modparams
# (db_mode 3 on $RPORT, the mapping keys db_redis's README recommends).
kamailio_mpath() {
  require_tools kamailio
  for mpath in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/aarch64-linux-gnu/kamailio/modules /usr/lib/kamailio/modules; do
    [[ -f "$mpath/db_redis.so" ]] && break
  done
  [[ -f "$mpath/db_redis.so" && -f "$mpath/app_lua.so" ]] || { echo "kamailio db_redis.so/app_lua.so missing (kamailio-redis-modules, kamailio-lua-modules)" >&2; exit 2; }
}
kamailio_redis_usrloc() {
  printf 'modparam("db_redis", "schema_path", "/usr/share/kamailio/db_redis/kamailio")\n'
  printf 'modparam("db_redis", "keys", "version=entry:table_name")\n'
  printf 'modparam("db_redis", "keys", "location=entry:ruid&usrdom:username,domain&timer:partition,keepalive")\n'
  printf 'modparam("db_redis", "verbosity", 0)\nmodparam("usrloc", "db_url", "redis://127.0.0.1:%s/0")\n' "$RPORT"
  printf 'modparam("usrloc", "db_mode", 3)\n'
}
