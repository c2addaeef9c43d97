#!/usr/bin/env bash
# Installs what the tests need on a Debian machine when it is missing and we
# can (root or passwordless sudo); otherwise fails saying what to install.
# Usage: scripts/deps.sh [test|bench|lint]
set -euo pipefail

# lint: golangci-lint at the version below, built through the Go module proxy
# into bin/tools/ (git-ignored) when missing or of another version.
if [ "${1:-test}" = lint ]; then
  version=2.15.0
  tools="$(cd "$(dirname "$0")/.." && pwd)/bin/tools"
  if [ "$("$tools/golangci-lint" version --short 2>/dev/null || true)" != "$version" ]; then
    echo "installing golangci-lint v$version into bin/tools (takes a few minutes the first time)..." >&2
    GOBIN="$tools" "${GO:-go}" install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$version"
  fi
  exit 0
fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium) # the dashboard's browser test
# deploy tests: socket activation and unit checks (systemd), the image (docker.io).
command -v systemd-socket-activate >/dev/null 2>&1 || need+=(systemd)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# herd run's examples (cmd/herd's e2e tests run them).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${1:-test}" = bench ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
# start_dockerd starts the Docker engine in the background when none answers
# (the image test needs one); its log goes to a temporary file.
start_dockerd() {
  [ "${1:-test}" = test ] || return 0
  command -v dockerd >/dev/null 2>&1 || return 0
  docker info >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "the Docker engine is not running: start it (sudo systemctl start docker, or sudo dockerd &), then run make again" >&2
    exit 1
  fi
  log=$(mktemp -t dockerd-XXXXXX.log)
  echo "starting dockerd (log: $log)..." >&2
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "dockerd did not start; its log:" >&2
  tail -20 "$log" >&2
  exit 1
}
if [ ${#need[@]} -eq 0 ]; then
  start_dockerd "${1:-test}"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "missing: ${need[*]}: install with 'apt-get install -y ${need[*]}' (as root), then run make again" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]}: install them with your package manager, then run make again" >&2
  exit 1
fi
echo "installing ${need[*]} (Debian packages the tests need)..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
# The package may start a system service on 6379; the tests start their own
# servers on free ports and do not need it.
for pkg in "${need[@]}"; do
  case $pkg in systemd) cmd=systemd-socket-activate ;; docker.io) cmd=dockerd ;; nodejs) cmd=node ;; *) cmd=$pkg ;; esac
  command -v "$cmd" >/dev/null 2>&1 || { echo "installing $pkg failed: install it with 'apt-get install -y $pkg'" >&2; exit 1; }
done
start_dockerd "${1:-test}"
