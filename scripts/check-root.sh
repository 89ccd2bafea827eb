#!/bin/sh
# The network-namespace tests need root and a working `ip netns`: say so in one line, and fail
# (a skipped test proves nothing).
# No options but --help; anything else is a usage error (exit 2, as in every script here).
if [ $# -gt 0 ]; then
  case $1 in
    -h | --help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test:netns: unknown argument $1 (it takes none; see --help)" >&2; exit 2 ;;
  esac
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test:netns: needs root (network namespaces, iptables, NFQUEUE): run as root" >&2
  exit 1
fi
if ! ip netns list >/dev/null 2>&1; then
  echo "test:netns: 'ip netns' does not work on this machine" >&2
  exit 1
fi
