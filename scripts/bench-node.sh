#!/usr/bin/env bash
# Compares the Node example (examples/node) under herd run, Node's cluster
# module (bin.js) and PM2 cluster mode, on this machine, alternating the
# contenders in each round, for two versions of the app:
#   as-written  reference.js: the reference's app.listen(PORT) and no
#               signal handler (Node exits at once on SIGTERM/SIGINT);
#   draining    server.js: the same app with its own graceful stop.
# Per round, contender and app: requests/s on / and /api/10000000 under
# wrk -c50, and failed requests (socket errors + non-2xx) under wrk -c50
# across 5 reloads.
#
# Usage: scripts/bench-node.sh [ROUNDS] [PM2_DIR]
#   ROUNDS   default 3
#   PM2_DIR  a directory where "npm install pm2" was run; without it the
#            script installs pm2 (PM2_VERSION, default the newest) into its
#            own temporary directory.
# Environment: DUR (wrk duration per throughput run, default 10s),
#   CONTENDERS (default "herd cluster pm2"), APPS (default "as-written draining").
# Needs wrk, curl, node and npm, examples/node/node_modules (npm ci), and go
# (builds herd). Uses port 3950 on loopback.
set -euo pipefail
rounds=${1:-3}
pm2dir=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  if [ -n "${current:-}" ]; then stop "$current" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/herd" "$root/cmd/herd"
if [ -z "$pm2dir" ]; then
  pm2dir="$work/pm2"
  mkdir -p "$pm2dir"
  echo "installing pm2${PM2_VERSION:+@$PM2_VERSION} into a temporary directory" >&2
  (cd "$pm2dir" && npm install --no-save --no-audit --no-fund --loglevel=error "pm2@${PM2_VERSION:-latest}" > /dev/null)
fi
pm2="$pm2dir/node_modules/.bin/pm2"
export PM2_HOME="$work/pm2home"
port=3950
workers=2
dur=${DUR:-10s}
app="$root/examples/node"
echo "node $(node --version), pm2 $("$pm2" --version 2>/dev/null | tail -1), wrk $(wrk --version 2>&1 | awk 'NR==1 {print $2}'), $(nproc) cores" >&2

script() { # the app's file
  case $1 in
    as-written) echo reference.js ;;
    draining) echo server.js ;;
  esac
}
wait_up() { # until both workers answer
  for _ in $(seq 240); do
    if [ "$(for _ in 1 2 3 4 5 6; do curl -s -m 2 "localhost:$port/pid"; echo; done | sort -u | grep -c processid)" -ge "$workers" ]; then return 0; fi
    sleep 0.5
  done
  echo "not up" >&2; return 1
}
rps() { wrk -t2 -c50 -d"$dur" "http://127.0.0.1:$port$1" | awk '/Requests\/sec/ {print $2}'; }
failed() { # from a wrk report: socket errors plus non-2xx/3xx answers
  awk '/Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} /Non-2xx/ {n += $NF} END {print n + 0}' "$1"
}

start() { # contender app
  local js
  js=$(script "$2")
  case $1 in
    herd) "$work/herd" run --workers $workers --port $port --ready-probe http:/pid --log-format json -- node "$app/$js" > "$work/herd.log" 2>&1 &
          echo $! > "$work/pid" ;;
    cluster) (cd "$app" && PORT=$port WORKERS=$workers WORKER_SCRIPT="./$js" exec node bin.js > "$work/cluster.log" 2>&1) &
          echo $! > "$work/pid" ;;
    pm2) # --wait-ready only for the app that sends "ready" (server.js);
         # for the other PM2 waits for the worker to listen.
         local ready=()
         if [ "$2" = draining ]; then ready=(--wait-ready --listen-timeout 30000); fi
         (cd "$app" && PORT=$port "$pm2" start "$js" --name bench -i $workers "${ready[@]}" > "$work/pm2.log" 2>&1) ;;
  esac
  current=$1
  wait_up
}
reload() {
  case $1 in
    herd) "$work/herd" reload --port $port > /dev/null ;;
    cluster) n=$(grep -c "reload complete" "$work/cluster.log" || true); kill -HUP "$(cat "$work/pid")"
             until [ "$(grep -c "reload complete" "$work/cluster.log" || true)" -gt "$n" ]; do sleep 0.2; done ;;
    pm2) "$pm2" reload bench > /dev/null ;;
  esac
}
stop() {
  case $1 in
    herd|cluster) kill -TERM "$(cat "$work/pid")" 2>/dev/null || true
                  for _ in $(seq 300); do kill -0 "$(cat "$work/pid")" 2>/dev/null || break; sleep 0.2; done ;;
    pm2) "$pm2" kill > /dev/null 2>&1 ;;
  esac
  current=
}

echo "round contender app root_rps api1e7_rps reload_requests reload_failed"
for r in $(seq "$rounds"); do
  for a in ${APPS:-as-written draining}; do
    for c in ${CONTENDERS:-herd cluster pm2}; do
      start $c $a
      root_rps=$(rps /)
      api_rps=$(rps /api/10000000)
      # A generous timeout: a slow answer on a busy machine is not a drop.
      wrk -t2 -c50 -d600s --timeout 30s "http://127.0.0.1:$port/" > "$work/wrk-reload.txt" 2>&1 &
      wpid=$!
      sleep 2
      for _ in 1 2 3 4 5; do reload $c; sleep 1; done
      kill -INT $wpid; wait $wpid || true
      total=$(awk '/requests in/ {print $1}' "$work/wrk-reload.txt")
      echo "$r $c $a $root_rps $api_rps $total $(failed "$work/wrk-reload.txt")"
      grep -E "Socket errors|Non-2xx" "$work/wrk-reload.txt" | sed 's/^/    /' >&2 || true
      stop $c
    done
  done
done
