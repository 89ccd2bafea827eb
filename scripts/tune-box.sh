#!/bin/sh
# Tune a Tandem box for long fat links (issue 4). Idempotent; run as root on each box (or
# inside a box's namespace). What it does, and why:
#   - net.ipv4.tcp_slow_start_after_idle=0: an idle subflow keeps its congestion window, so
#     the warm trunk stays warm (Linux falls back to slow start after one RTO of idleness).
#   - tcp_rmem/tcp_wmem maxima of 64 MiB: room for a bandwidth-delay product per socket
#     (100 Mbit/s at 600 ms is 7.5 MB; autotuning still sizes each socket). The tcp_rmem
#     default of 1 MiB keeps the initrwnd below from being cut to 64 KB by the default
#     buffer, so an idle subflow takes a full initial window at once.
#   - initcwnd/initrwnd 100 on the route to the peer box: new subflows (and re-dials) start
#     with 100 segments in flight instead of 10, so the first flows do not crawl.
# Usage: scripts/tune-box.sh [--peer ADDRESS] [--dev br0]
set -eu
peer=""
dev=br0
while [ $# -gt 0 ]; do
  case "$1" in
    --peer) peer=$2; shift 2 ;;
    --dev) dev=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tune-box.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "tune-box.sh: needs root (sysctl, ip route)" >&2
  exit 1
fi
sysctl -q -w net.ipv4.tcp_slow_start_after_idle=0
sysctl -q -w net.ipv4.tcp_rmem="4096 1048576 67108864"
sysctl -q -w net.ipv4.tcp_wmem="4096 65536 67108864"
# The core limits are global (root namespace only); inside a namespace they are not there.
if [ -w /proc/sys/net/core/rmem_max ]; then
  sysctl -q -w net.core.rmem_max=67108864 2>/dev/null || true
  sysctl -q -w net.core.wmem_max=67108864 2>/dev/null || true
fi
if [ -n "$peer" ]; then
  case "$peer" in
    *:*) fam=-6 ;;
    *) fam=-4 ;;
  esac
  if ! ip link show "$dev" >/dev/null 2>&1; then
    echo "tune-box.sh: interface $dev does not exist" >&2
    exit 1
  fi
  ip "$fam" route replace "$peer" dev "$dev" initcwnd 100 initrwnd 100
fi
echo "tune-box.sh: tuned (slow start after idle off, 64 MiB socket buffer maxima${peer:+, initcwnd 100 to $peer})"
