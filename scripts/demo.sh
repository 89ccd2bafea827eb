#!/bin/sh
# The README's first command (`make demo`): needs root (network namespaces, iptables, NFQUEUE).
set -eu
cd "$(dirname "$0")/.."
# demo.js checks root itself, after its options: a usage error exits 2 for anyone.
exec node dist/lab/demo/demo.js "$@"
