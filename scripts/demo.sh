#!/bin/sh
# The README's first command (`make demo`): needs root (network namespaces, iptables, NFQUEUE).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, iptables, NFQUEUE): run it as root" >&2
  exit 1
fi
exec node dist/lab/demo/demo.js "$@"
