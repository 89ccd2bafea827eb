#!/bin/sh
# Everything a fresh Debian machine needs before Tandem builds and its tests run:
# system packages (as root, through apt-get, only those missing), npm packages, the native
# addon and the TypeScript build. Idempotent: a second run only rebuilds.
#   --bench   also the programs the benchmark compares Tandem with (iperf3, kcptun, mptcpize)
set -eu
# Options: --bench and --help; anything else is a usage error (exit 2, as in every script here).
bench=false
for arg in "$@"; do
  case "$arg" in
    --bench) bench=true ;;
    -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument $arg (usage: setup.sh [--bench]; see --help)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

need=""
have() { command -v "$1" >/dev/null 2>&1; }
pkg_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

have ip || need="$need iproute2"
have iptables || need="$need iptables"
have ethtool || need="$need ethtool"
have ping || need="$need iputils-ping"
have ps || need="$need procps"
have g++ || need="$need g++"
have systemd-analyze || need="$need systemd"
have make || need="$need make"
have python3 || need="$need python3"
# nft: the transparent-interception rules (iptables/apply.sh) and their tests; installed here so
# that apply.sh never has to install it at run time.
have nft || need="$need nftables"
# promtool (Debian's prometheus package) lints a real scrape in the metrics tests.
have promtool || need="$need prometheus"
pkg_missing libnetfilter-queue-dev && need="$need libnetfilter-queue-dev"
# Tandem's congestion control for the subflows (native/bpf, scripts/tandem-cc.sh): clang
# compiles it, libbpf-dev has its headers, bpftool reads the kernel's BTF and registers it.
have clang || need="$need clang"
have bpftool || need="$need bpftool"
pkg_missing libbpf-dev && need="$need libbpf-dev"
if [ "$bench" = true ]; then
  have iperf3 || need="$need iperf3"
  have kcptun-client || need="$need kcptun"
  have mptcpize || need="$need mptcpize"
fi

if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages:$need (run as root, or: sudo apt-get install -y$need)" >&2
    exit 1
  fi
  echo "setup: installing$need" >&2
  # Several installs may run at once on one machine: wait for the dpkg lock, do not fail on it.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  # shellcheck disable=SC2086 # the package list is meant to split
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $need >/dev/null
  # Only promtool is wanted from the prometheus package: not a Prometheus server running here.
  case "$need" in *prometheus*)
    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi ;;
  esac
fi

# bbr for the subflows (trunk.congestion = auto picks it where the kernel offers it; the tests
# expect it where it can be had). Loaded for now only: this script sets up a checkout and its
# tests, not a box, so it writes nothing under /etc (scripts/tune-box.sh persists it on a box).
if ! grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v modprobe >/dev/null 2>&1 && modprobe -q tcp_bbr 2>/dev/null; then
    echo "setup: loaded tcp_bbr" >&2
  else
    echo "setup: tcp_bbr not loaded (needs root and modprobe): subflows keep the system's congestion control" >&2
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ -n "$(find package-lock.json -newer node_modules/.package-lock.json)" ]; then
  echo "setup: npm ci" >&2
  # Install scripts of dependencies are not needed: the native addon is built below by our own script.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
sh scripts/build-native.sh
# Tandem's congestion control registered for now only (as tcp_bbr above: a registration lasts
# until reboot; scripts/tune-box.sh registers it on a box, and again at each boot).
if [ "$(id -u)" -eq 0 ]; then
  sh scripts/tandem-cc.sh register >&2 || echo "setup: tandem congestion control not registered (only trunk.congestion = tandem needs it)" >&2
fi
npm run --silent build
echo "setup: ready" >&2
