#!/bin/sh
# The network-namespace tests need root and a working `ip netns`: say so in one line, and fail
# (a skipped test proves nothing).
if [ "$(id -u)" -ne 0 ]; then
  echo "test:netns: needs root (network namespaces, iptables, NFQUEUE): run as root" >&2
  exit 1
fi
if ! ip netns list >/dev/null 2>&1; then
  echo "test:netns: 'ip netns' does not work on this machine" >&2
  exit 1
fi
