#!/usr/bin/env bash
# Installs what the tests need on a Debian machine when it is missing and we
# can (root or passwordless sudo); otherwise fails saying what to install.
# Usage: scripts/deps.sh [test|bench]
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# herd run's examples (cmd/herd's e2e tests run them).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${1:-test}" = bench ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
[ ${#need[@]} -eq 0 ] && exit 0

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
  cmd=$pkg
  [ "$pkg" = nodejs ] && cmd=node
  command -v "$cmd" >/dev/null 2>&1 || { echo "installing $pkg failed: install it with 'apt-get install -y $pkg'" >&2; exit 1; }
done
