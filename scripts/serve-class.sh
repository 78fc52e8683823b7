#!/usr/bin/env bash
# Serves Residual Lab to a class: several Streamlit processes behind haproxy, with sticky sessions.
#
#   bash scripts/serve-class.sh [--processes N] [--port P] [--address A] [--log-dir DIR]
#                               [--tabs-per-client T] [--no-setup]
#
#   --processes N   Streamlit server processes (default: one per two CPU cores, at least 2)
#   --tabs-per-client T  open tabs (Streamlit sessions) one computer may hold (default 8; 0: no cap).
#                   A class behind one NAT address shares it: raise it, or 0, there
#   --port P        the one port the class opens (default 8501, as scripts/app.sh)
#   --address A     where haproxy listens (default 0.0.0.0: the students' machines reach it)
#   --log-dir DIR   keep each process's log there (default: a temporary folder, removed on exit)
#   --no-setup      skip `scripts/setup.sh` and use .venv as it is
#
# What it starts, all as plain foreground children of this script, and stops again on Ctrl-C or
# SIGTERM: N `python -m dashboard.serve` (`streamlit run dashboard/app.py`, as scripts/app.sh) on free 127.0.0.1 ports, and Debian's haproxy in
# front of them with a generated config. haproxy sends a new browser to the backend with the fewest
# open sessions and sets a cookie (SERVERID) naming it; the browser sends that cookie with every
# request, the WebSocket upgrade on /_stcore/stream included, so a session stays in the process
# that holds it. Every response says which backend served it (header X-Residual-Lab-Backend).
# haproxy checks each backend on /_stcore/health and sends no sessions to one that fails; a backend
# that stops is started again on its port.
#
# Shared and split between the processes:
#   RESIDUAL_LAB_RUN_CACHE             one run cache for all (default runs/cache under the project)
#   RESIDUAL_LAB_SERVER_MEMORY_MB      3/4 of the machine's memory, split evenly (each process's workers)
#   RESIDUAL_LAB_PROCESSES             the machine's worker processes (training and analyses together),
#                                      cores - 1 (what one server process uses), split evenly: with 8
#                                      cores and 3 processes, 3, 2 and 2; never under 1. Set it to give
#                                      every process that many instead.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: bash scripts/serve-class.sh [--processes N] [--port P] [--address A] [--log-dir DIR] [--tabs-per-client T] [--no-setup]"
bad() { echo "serve-class: $*" >&2; exit 2; }
fail() { echo "serve-class: $*" >&2; exit 1; }

cores=$(nproc 2>/dev/null || echo 2)
processes=$(( cores / 2 > 2 ? cores / 2 : 2 ))
port=8501
address=0.0.0.0
log_dir=""
tabs=8
setup=1
while [ $# -gt 0 ]; do
  arg=$1; shift
  case $arg in
    --processes=*|--port=*|--address=*|--log-dir=*|--tabs-per-client=*) set -- "${arg#*=}" "$@"; arg=${arg%%=*} ;;
  esac
  case $arg in
    --processes|--port|--address|--log-dir|--tabs-per-client)
      [ $# -gt 0 ] || bad "$arg needs a value; $usage"
      value=$1; shift
      case $arg in
        --processes)
          [[ $value =~ ^[0-9]+$ ]] && (( 10#$value >= 1 && 10#$value <= 64 )) \
            || bad "--processes must be a whole number from 1 to 64, not '$value'"
          processes=$((10#$value)) ;;
        --port)
          [[ $value =~ ^[0-9]+$ ]] && (( 10#$value >= 1 && 10#$value <= 65535 )) \
            || bad "--port must be a whole number from 1 to 65535, not '$value'"
          port=$((10#$value)) ;;
        --address)
          [[ $value =~ ^[0-9A-Za-z.:-]+$ ]] || bad "--address must be a host name or IP address, not '$value'"
          address=$value ;;
        --log-dir)
          [ -n "$value" ] || bad "--log-dir needs a folder"
          log_dir=$value ;;
        --tabs-per-client)
          [[ $value =~ ^[0-9]+$ ]] && (( 10#$value <= 10000 )) \
            || bad "--tabs-per-client must be a whole number from 0 (no cap) to 10000, not '$value'"
          tabs=$((10#$value)) ;;
      esac ;;
    --no-setup) setup=0 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) bad "unknown argument '$arg'; $usage" ;;
  esac
done

[ "$setup" = 0 ] || bash scripts/setup.sh
py=.venv/bin/python
[ -x "$py" ] || fail "no .venv here: run without --no-setup once, or bash scripts/setup.sh"

haproxy=$(command -v haproxy || true)
[ -n "$haproxy" ] || [ ! -x /usr/sbin/haproxy ] || haproxy=/usr/sbin/haproxy
if [ -z "$haproxy" ]; then
  # Debian's haproxy, run by this script as a plain child process (its system service is not used).
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "serve-class: installing haproxy (apt-get)" >&2
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq haproxy >/dev/null
  haproxy=/usr/sbin/haproxy
  [ -x "$haproxy" ] || fail "haproxy is not installed and could not be (Debian: apt-get install haproxy)"
fi

# One port for the class, N free ones on 127.0.0.1 for the backends (the class never sees those).
ports=$("$py" - "$address" "$port" "$processes" <<'EOF'
import socket, sys
address, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
except OSError as exc:
    sys.exit(f"serve-class: cannot listen on {address}:{port}: {exc.strerror or exc}")
held = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
) || exit 1
read -r -a ports <<<"$ports"

export RESIDUAL_LAB_RUN_CACHE="${RESIDUAL_LAB_RUN_CACHE:-$PWD/runs/cache}"
mkdir -p "$RESIDUAL_LAB_RUN_CACHE"
training_budget=$(( cores > 1 ? cores - 1 : 1 ))
memory_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 8388608) / 1024 ))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/residual-lab-class.XXXXXX")
logs=${log_dir:-$tmp}
mkdir -p "$logs"
pids=()      # each Streamlit process leads its own process group: its training workers are in it
hap=""

running() {  # a live process (not a zombie waiting to be reaped)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

cleanup() {
  trap - EXIT INT TERM HUP
  set +e
  [ -n "$hap" ] && kill -TERM "$hap" 2>/dev/null
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  for _ in $(seq 150); do  # up to 15 s for a clean stop (sessions released, workers closed) ...
    left=0
    for pid in "${pids[@]}" $hap; do running "$pid" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done  # ... then whatever is left
  [ -n "$hap" ] && kill -KILL "$hap" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
  echo "serve-class: stopped ${#pids[@]} Streamlit process(es)${hap:+ and haproxy}" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

show_log() { echo "--- last lines of $1 ---" >&2; tail -n 20 "$1" >&2 || true; }

start_backend() {  # backend $1 on its port; a restart appends to its log
  local i=$1 share
  share=$(( training_budget / processes + (i <= training_budget % processes ? 1 : 0) ))
  RESIDUAL_LAB_PROCESSES=${RESIDUAL_LAB_PROCESSES:-$(( share > 0 ? share : 1 ))} \
  RESIDUAL_LAB_SERVER_MEMORY_MB=${RESIDUAL_LAB_SERVER_MEMORY_MB:-$(( memory_mb * 3 / 4 / processes ))} \
  PYTHONUNBUFFERED=1 setsid "$py" -m dashboard.serve --server.port "${ports[i-1]}" \
    --server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false \
    >>"$logs/backend$i.log" 2>&1 </dev/null &
  pids[i-1]=$!
}
for i in $(seq 1 "$processes"); do
  : >"$logs/backend$i.log"
  start_backend "$i"
done

healthy() {  # GET /_stcore/health answers 200 (bash's own /dev/tcp: no curl needed)
  local reply
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'GET /_stcore/health HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  read -r -t 2 reply <&3 || reply=""
  exec 3<&- 3>&-
  [[ $reply == *" 200 "* ]]
}

for _ in $(seq 1200); do  # up to 120 s: each process imports Streamlit and the app once
  up=0
  for i in $(seq 1 "$processes"); do
    running "${pids[i-1]}" || { show_log "$logs/backend$i.log"; fail "backend$i stopped while starting"; }
    healthy 127.0.0.1 "${ports[i-1]}" && up=$((up + 1))
  done
  [ "$up" = "$processes" ] && break
  sleep 0.1
done
[ "$up" = "$processes" ] || fail "only $up of $processes Streamlit processes answered within 120 s (logs: $logs)"

{
  cat <<EOF
global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 15s
    timeout client-fin 10s
    timeout tunnel 8h          # an open tab's WebSocket: a lesson may sit idle for a while
    option http-server-close   # server side: only the sessions' WebSockets stay open
    option redispatch          # a backend that died: the tab reconnects to a live one (a new session)
    retries 2

frontend class
    bind ${address}:${port}
    default_backend streamlit
    option forwardfor          # the app sees each computer's address: it caps the runs one trains at once
EOF
  if [ "$tabs" -gt 0 ]; then
    cat <<EOF
    # At most ${tabs} open tabs per computer: a tab is one Streamlit session, one WebSocket on
    # /_stcore/stream; one more is answered 429 (the page says it cannot connect).
    http-request track-sc1 src table tabs if { path_beg /_stcore/stream }
    http-request deny deny_status 429 if { path_beg /_stcore/stream } { sc1_conn_cur(tabs) gt ${tabs} }

backend tabs
    stick-table type ipv6 size 100k expire 1h store conn_cur
EOF
  fi
  cat <<EOF

backend streamlit
    balance leastconn          # a new session goes where the fewest are open
    cookie SERVERID insert indirect nocache httponly
    option httpchk GET /_stcore/health
    http-check expect status 200
    timeout check 10s          # a busy process answers late, yet serves its sessions: only a hung one fails
    default-server check inter 2s fall 2 rise 1
    http-response set-header X-Residual-Lab-Backend %s
EOF
  for i in $(seq 1 "$processes"); do
    echo "    server backend$i 127.0.0.1:${ports[i-1]} cookie backend$i"
  done
} >"$tmp/haproxy.cfg"
[ -z "$log_dir" ] || cp "$tmp/haproxy.cfg" "$logs/haproxy.cfg"

"$haproxy" -db -f "$tmp/haproxy.cfg" >"$logs/haproxy.log" 2>&1 </dev/null &
hap=$!
probe=$address; [ "$probe" = 0.0.0.0 ] && probe=127.0.0.1; [ "$probe" = "::" ] && probe=::1
for _ in $(seq 100); do
  running "$hap" || { show_log "$logs/haproxy.log"; fail "haproxy stopped while starting"; }
  healthy "$probe" "$port" && break
  sleep 0.1
done
healthy "$probe" "$port" || { show_log "$logs/haproxy.log"; fail "haproxy did not answer on $address:$port"; }

for i in $(seq 1 "$processes"); do
  echo "backend$i 127.0.0.1:${ports[i-1]} pid ${pids[i-1]} log $logs/backend$i.log"
done
echo "run cache $RESIDUAL_LAB_RUN_CACHE"
shown=$address; [ "$shown" = 0.0.0.0 ] && shown=$(hostname 2>/dev/null || echo localhost)
echo "Residual Lab for a class at http://$shown:$port ($processes processes) - Ctrl-C stops everything"

# haproxy's health checks send new sessions around a backend that stopped (its open tabs reconnect
# to another one, as new sessions); the script starts it again. haproxy stopping stops everything.
set +e
restarts=0
while true; do
  wait -n "${pids[@]}" "$hap"
  running "$hap" || { show_log "$logs/haproxy.log"; fail "haproxy stopped unexpectedly; stopping the rest"; }
  for i in $(seq 1 "$processes"); do
    running "${pids[i-1]}" && continue
    show_log "$logs/backend$i.log"
    restarts=$((restarts + 1))
    (( restarts <= 20 )) || fail "backend$i stopped, and Streamlit processes have stopped 20 times: giving up"
    echo "serve-class: backend$i stopped; starting it again" >&2
    start_backend "$i"
    echo "backend$i 127.0.0.1:${ports[i-1]} pid ${pids[i-1]} log $logs/backend$i.log"
  done
done
