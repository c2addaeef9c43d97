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
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "installing $cmd failed: install it with 'apt-get install -y $cmd'" >&2; exit 1; }
done
