#!/usr/bin/env bash
# Compares the Node example (examples/node) under herd run, Node's cluster
# module (bin.js) and PM2 cluster mode, on this machine, alternating the
# contenders in each round: requests/s on / and /api/10000000 under
# wrk -c50, and failed requests (socket errors + non-2xx) over 5 reloads.
# Usage: scripts/bench-node.sh ROUNDS PM2_DIR
#   PM2_DIR: a directory where "npm install pm2" was run (not part of the repo).
# Needs wrk, node, examples/node/node_modules, and go (builds herd).
set -euo pipefail
rounds=${1:-3}
pm2dir=${2:?usage: scripts/bench-node.sh ROUNDS PM2_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/herd" "$root/cmd/herd"
pm2="$pm2dir/node_modules/.bin/pm2"
export PM2_HOME="$work/pm2home"
port=3950
workers=2
dur=${DUR:-10s}
app="$root/examples/node"

wait_up() { # until both workers answer
  for _ in $(seq 120); do
    if [ "$(for _ in 1 2 3 4 5 6; do curl -s -m 2 "localhost:$port/pid"; echo; done | sort -u | grep -c processid)" -ge "$workers" ]; then return 0; fi
    sleep 0.5
  done
  echo "not up" >&2; return 1
}
rps() { wrk -t2 -c50 -d"$dur" "http://127.0.0.1:$port$1" | awk '/Requests\/sec/ {print $2}'; }
failed() { # from a wrk report: socket errors plus non-2xx/3xx answers
  awk '/Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} /Non-2xx/ {n += $NF} END {print n + 0}' "$1"
}

start() {
  case $1 in
    herd) "$work/herd" run --workers $workers --port $port --ready-probe http:/pid --log-format json -- node "$app/server.js" > "$work/herd.log" 2>&1 &
          echo $! > "$work/pid" ;;
    cluster) (cd "$app" && PORT=$port WORKERS=$workers exec node bin.js > "$work/cluster.log" 2>&1) &
          echo $! > "$work/pid" ;;
    pm2) (cd "$app" && PORT=$port "$pm2" start server.js --name bench -i $workers --wait-ready --listen-timeout 30000 > "$work/pm2.log" 2>&1) ;;
  esac
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
    herd|cluster) kill -TERM "$(cat "$work/pid")"; while kill -0 "$(cat "$work/pid")" 2>/dev/null; do sleep 0.2; done ;;
    pm2) "$pm2" kill > /dev/null 2>&1 ;;
  esac
}

echo "round contender root_rps api1e7_rps reload_requests reload_failed"
for r in $(seq "$rounds"); do
  for c in ${CONTENDERS:-herd cluster pm2}; do
    start $c
    root_rps=$(rps /)
    api_rps=$(rps /api/10000000)
    # A generous timeout: a slow answer on a busy machine is not a drop.
    wrk -t2 -c50 -d600s --timeout 30s "http://127.0.0.1:$port/" > "$work/wrk-reload.txt" 2>&1 &
    wpid=$!
    sleep 2
    for _ in 1 2 3 4 5; do reload $c; sleep 1; done
    kill -INT $wpid; wait $wpid || true
    total=$(awk '/requests in/ {print $1}' "$work/wrk-reload.txt")
    echo "$r $c $root_rps $api_rps $total $(failed "$work/wrk-reload.txt")"
    grep -E "Socket errors|Non-2xx" "$work/wrk-reload.txt" | sed 's/^/    /' >&2 || true
    stop $c
  done
done
