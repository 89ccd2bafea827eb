#!/bin/sh
# Tunes a Tandem box for long fat links, now and across reboots. Idempotent; run as root on
# each box (or inside a box's namespace). What it sets, and why:
#   - net.ipv4.tcp_slow_start_after_idle=0: an idle subflow keeps its congestion window, so
#     the warm trunk stays warm (Linux falls back to slow start after one RTO of idleness).
#   - tcp_rmem/tcp_wmem maxima of 64 MiB: room for a bandwidth-delay product per socket
#     (100 Mbit/s at 600 ms is 7.5 MB; autotuning still sizes each socket). The tcp_rmem
#     default of 1 MiB keeps the initrwnd below from being cut to 64 KB by the default
#     buffer, so an idle subflow takes a full initial window at once.
#   - initcwnd/initrwnd 100 on the route to the peer box: new subflows (and re-dials) start
#     with 100 segments in flight instead of 10, so the first flows do not crawl.
#   - the tcp_bbr module loaded: trunk.congestion = auto (the default) puts the subflows on bbr
#     where the kernel offers it, and a stock Debian kernel offers it only once it is loaded.
#   - Tandem's own congestion control registered (scripts/tandem-cc.sh register, where it was
#     built): trunk.congestion = auto puts a long path's subflows (80 ms or more) on it.
# What survives a reboot:
#   - the sysctls go to ROOT/etc/sysctl.d/90-tandem.conf (systemd-sysctl loads it at boot);
#   - tcp_bbr goes to ROOT/etc/modules-load.d/tandem.conf (systemd-modules-load loads it);
#   - the route (PEER DEV) goes to ROOT/etc/tandem/route-tuning. A route dies with its device,
#     so tandem-route-tuning@DEV.service (deploy/systemd), bound to the device, runs
#     `tune-box.sh --routes --dev DEV` each time DEV appears (boot, br0 re-created);
#   - the congestion control is registered again by that same --routes run.
# Usage: scripts/tune-box.sh [--peer ADDRESS] [--dev br0] [--root DIR] [--no-persist]
#        scripts/tune-box.sh --routes [--dev br0] [--wait SECONDS] [--root DIR]
#   --root DIR     write the two files under DIR and change nothing on the running system
#                  (a staging root: tests, packaging); also TANDEM_ROOT=DIR
#   --no-persist   apply now, write no file
#   --routes       only re-apply the routes ROOT/etc/tandem/route-tuning lists for --dev,
#                  waiting up to --wait seconds (default 30) for the device to be up
# Exit status: 0 done, 1 failed, 2 usage error.
set -eu
PROG=tune-box.sh
peer=""
dev=br0
root=${TANDEM_ROOT:-}
persist=yes
routes_only=no
wait_s=30

usage_die() {
  echo "$PROG: $*" >&2
  exit 2
}
die() {
  echo "$PROG: $*" >&2
  exit 1
}
need_value() {
  [ "$2" -ge 2 ] || usage_die "$1 needs a value (see --help)"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --peer)
      need_value "$1" $#
      peer=$2
      shift 2
      ;;
    --dev)
      need_value "$1" $#
      dev=$2
      shift 2
      ;;
    --root)
      need_value "$1" $#
      root=$2
      shift 2
      ;;
    --wait)
      need_value "$1" $#
      wait_s=$2
      shift 2
      ;;
    --no-persist)
      persist=no
      shift
      ;;
    --routes)
      routes_only=yes
      shift
      ;;
    -h | --help)
      sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) usage_die "unknown argument $1 (see --help)" ;;
  esac
done
case $dev in
  '' | *[!A-Za-z0-9_.-]*) usage_die "--dev: expected an interface name, got '$dev'" ;;
esac
case $peer in
  *[!0-9A-Fa-f.:]*) usage_die "--peer: expected an IPv4 or IPv6 address, got '$peer'" ;;
esac
case $wait_s in
  '' | *[!0-9]*) usage_die "--wait: expected whole seconds, got '$wait_s'" ;;
esac
[ -z "$root" ] || [ -d "$root" ] || die "--root $root is not a directory"

SYSCTL_FILE=$root/etc/sysctl.d/90-tandem.conf
MODULES_FILE=$root/etc/modules-load.d/tandem.conf
ROUTE_FILE=$root/etc/tandem/route-tuning
# The routes' options, in one place: what the file records is only PEER DEV.
ROUTE_OPTS='initcwnd 100 initrwnd 100'

# apply_route PEER DEV: the tuned route, replacing any route to PEER through DEV.
apply_route() {
  case "$1" in
    *:*) fam=-6 ;;
    *) fam=-4 ;;
  esac
  # shellcheck disable=SC2086 # the options are words
  ip "$fam" route replace "$1" dev "$2" $ROUTE_OPTS
}

# register_cc: Tandem's congestion control (scripts/tandem-cc.sh), where it was built; its
# absence is not an error (only trunk.congestion = tandem needs it; auto takes bbr). A tandem of
# another build (before an upgrade) is replaced; this build's is left as it is, silently
# (--quiet). What tandem-cc.sh did, it says itself.
register_cc() {
  if out=$(sh "$(dirname "$0")/tandem-cc.sh" register --quiet 2>&1); then
    [ -z "$out" ] || printf '%s\n' "$out"
  else
    echo "$PROG: warning: tandem congestion control not registered ($(printf '%s' "$out" | tail -n 1)): trunk.congestion = tandem is refused" >&2
  fi
}

# --- --routes: what the unit runs when the device appears ---------------------------------
if [ "$routes_only" = yes ]; then
  [ "$(id -u)" -eq 0 ] || die "needs root (ip route)"
  register_cc
  if [ ! -f "$ROUTE_FILE" ]; then
    echo "$PROG: no $ROUTE_FILE: no route to tune"
    exit 0
  fi
  # The device appears before bridge-setup.sh sets it up, and a route through a device that
  # is down is refused: wait for it.
  waited=0
  until ip link show dev "$dev" up 2>/dev/null | grep -q UP; do
    [ "$waited" -lt "$wait_s" ] || die "$dev is not up after ${wait_s}s: routes not tuned"
    sleep 1
    waited=$((waited + 1))
  done
  count=0
  while read -r p d; do
    case $p in '' | '#'*) continue ;; esac
    [ "$d" = "$dev" ] || continue
    apply_route "$p" "$d"
    count=$((count + 1))
  done <"$ROUTE_FILE"
  echo "$PROG: $count route(s) through $dev tuned ($ROUTE_OPTS)"
  exit 0
fi

# --- apply now ----------------------------------------------------------------------------
if [ -z "$root" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "needs root (sysctl, ip route); --root DIR only writes the files"
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
    ip link show "$dev" >/dev/null 2>&1 || die "interface $dev does not exist"
    apply_route "$peer" "$dev"
  fi
  echo "$PROG: tuned (slow start after idle off, 64 MiB socket buffer maxima${peer:+, $ROUTE_OPTS to $peer})"
  # bbr for the subflows (trunk.congestion = auto). Built in or loaded already: nothing to do.
  # A kernel without it is not an error: the proxies then keep the box's default and say so.
  if ! grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null; then
    if command -v modprobe >/dev/null 2>&1 && modprobe -q tcp_bbr 2>/dev/null; then
      echo "$PROG: loaded tcp_bbr"
    else
      echo "$PROG: warning: could not load tcp_bbr: the subflows keep the box's default congestion control" >&2
    fi
  fi
  register_cc
fi

# --- persist --------------------------------------------------------------------------------
if [ "$persist" = yes ]; then
  mkdir -p "$(dirname "$SYSCTL_FILE")" "$(dirname "$ROUTE_FILE")"
  cat >"$SYSCTL_FILE.tmp" <<'SYSCTL'
# Tandem: TCP tuning for long fat links (written by scripts/tune-box.sh; see its --help).
net.ipv4.tcp_slow_start_after_idle = 0
net.ipv4.tcp_rmem = 4096 1048576 67108864
net.ipv4.tcp_wmem = 4096 65536 67108864
# A leading '-': no error where the key is missing (inside a container's namespace).
-net.core.rmem_max = 67108864
-net.core.wmem_max = 67108864
SYSCTL
  mv "$SYSCTL_FILE.tmp" "$SYSCTL_FILE"
  echo "$PROG: wrote $SYSCTL_FILE"
  mkdir -p "$(dirname "$MODULES_FILE")"
  printf '%s\n' '# Tandem: bbr for the subflows (trunk.congestion = auto; written by scripts/tune-box.sh).' \
    tcp_bbr >"$MODULES_FILE.tmp"
  mv "$MODULES_FILE.tmp" "$MODULES_FILE"
  echo "$PROG: wrote $MODULES_FILE"
  if [ -n "$peer" ]; then
    if [ ! -f "$ROUTE_FILE" ]; then
      printf '# Tandem: PEER DEV, one route a line; tandem-route-tuning@DEV.service applies them\n# with %s when DEV comes up (written by scripts/tune-box.sh).\n' "$ROUTE_OPTS" >"$ROUTE_FILE"
    fi
    grep -qx "$peer $dev" "$ROUTE_FILE" || printf '%s %s\n' "$peer" "$dev" >>"$ROUTE_FILE"
    echo "$PROG: wrote $ROUTE_FILE ($peer $dev); enable its re-application at boot: systemctl enable tandem-route-tuning@$dev.service"
  fi
fi
