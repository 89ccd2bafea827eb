#!/bin/sh
# Tandem's own congestion control for the subflows (native/bpf/tandem_cc.bpf.c): a BPF
# struct_ops program that leaves the sending rate to the trunk's rate controller. Registered, it
# is where trunk.congestion = auto puts a long path's subflows (min RTT 80 ms or more), and
# trunk.congestion = tandem every path's.
# Usage: scripts/tandem-cc.sh build       compile native/build/bpf/tandem_cc.bpf.o (clang,
#                                         bpftool and the kernel's BTF; not fatal without them)
#        scripts/tandem-cc.sh register    register it with the kernel (root); nothing to do
#                                         when this build is registered already, and a
#                                         "tandem" of another build is replaced
#        scripts/tandem-cc.sh unregister  remove it (root); sockets on it keep it until closed
#        scripts/tandem-cc.sh status      say whether the kernel offers it
#   --object FILE   the compiled program (default native/build/bpf/tandem_cc.bpf.o)
#   --quiet         register: say nothing when there is nothing to do (scripts/tune-box.sh)
# A registration lasts until reboot or unregister: scripts/tune-box.sh registers it on a box,
# and its --routes run (tandem-route-tuning@DEV.service, at boot) registers it again. Which
# build is registered is recorded in /run/tandem/tandem-cc.registered (map id and the
# object's sha256), so an upgrade's register replaces the old one; a "tandem" without that
# record (registered by hand, or before the record existed) counts as another build.
# Exit status: 0 done, 1 failed, 2 usage error, 3 build tools or kernel support missing.
set -eu
PROG=tandem-cc.sh
NAME=tandem
here=$(cd "$(dirname "$0")/.." && pwd)
object=$here/native/build/bpf/tandem_cc.bpf.o
source_file=$here/native/bpf/tandem_cc.bpf.c
AVAILABLE=/proc/sys/net/ipv4/tcp_available_congestion_control
RECORD=/run/tandem/tandem-cc.registered
BTF=/sys/kernel/btf/vmlinux

usage_die() {
  echo "$PROG: $*" >&2
  exit 2
}
die() {
  echo "$PROG: $*" >&2
  exit 1
}

cmd=""
quiet=no
while [ $# -gt 0 ]; do
  case "$1" in
    build | register | unregister | status)
      [ -z "$cmd" ] || usage_die "one command at a time (got $cmd and $1)"
      cmd=$1
      shift
      ;;
    --object)
      [ $# -ge 2 ] || usage_die "--object needs a file (see --help)"
      object=$2
      shift 2
      ;;
    --quiet)
      quiet=yes
      shift
      ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) usage_die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$cmd" ] || usage_die "a command is needed: build, register, unregister or status (see --help)"

offered() {
  grep -qw "$NAME" "$AVAILABLE" 2>/dev/null
}

# map_id: the id of the registered struct_ops map named tandem (empty when none or no bpftool).
map_id() {
  bpftool struct_ops show name "$NAME" 2>/dev/null | sed -n "s/^\([0-9][0-9]*\): *$NAME .*/\1/p" | head -n 1
}

# object_sum: the sha256 of the compiled program.
object_sum() {
  sha256sum "$object" | cut -d ' ' -f 1
}

do_unregister() {
  if ! out=$(bpftool struct_ops unregister name "$NAME" 2>&1); then
    die "bpftool struct_ops unregister name $NAME failed: $(printf '%s' "$out" | tail -n 1)"
  fi
  rm -f "$RECORD"
}

case $cmd in
  build)
    for tool in clang bpftool; do
      if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$PROG: not built: $tool is missing (scripts/setup.sh installs it); trunk.congestion = tandem will be refused" >&2
        exit 3
      fi
    done
    if [ ! -r "$BTF" ]; then
      echo "$PROG: not built: the kernel has no BTF ($BTF); trunk.congestion = tandem will be refused" >&2
      exit 3
    fi
    out=$(dirname "$object")
    mkdir -p "$out"
    bpftool btf dump file "$BTF" format c >"$out/vmlinux.h.tmp"
    mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
    clang -O2 -g -Wall -target bpf -I "$out" -c "$source_file" -o "$object.tmp"
    mv "$object.tmp" "$object"
    echo "$PROG: built $object" >&2
    ;;
  register)
    [ -f "$object" ] || {
      if offered; then
        [ "$quiet" = yes ] || echo "$PROG: the kernel offers $NAME already (no $object to compare it with)"
        exit 0
      fi
      echo "$PROG: not registered: no $object (run scripts/tandem-cc.sh build); trunk.congestion = tandem will be refused" >&2
      exit 3
    }
    sum=$(object_sum)
    if offered && [ "$(cat "$RECORD" 2>/dev/null)" = "$(map_id) $sum" ]; then
      [ "$quiet" = yes ] || echo "$PROG: the kernel offers $NAME already (this build, $(printf '%.12s' "$sum"))"
      exit 0
    fi
    [ "$(id -u)" -eq 0 ] || die "needs root (bpftool struct_ops register)"
    command -v bpftool >/dev/null 2>&1 || {
      echo "$PROG: not registered: bpftool is missing; trunk.congestion = tandem will be refused" >&2
      exit 3
    }
    if offered; then
      # Sockets on the old one keep it until they close. A proxy that moves a subflow to tandem
      # in the moment between the two steps is refused, warns, and keeps its long paths on bbr
      # until it restarts (src/trunk/congestion.ts); the package's postinst replaces it too.
      echo "$PROG: the registered $NAME is another build; replacing it with $object" >&2
      do_unregister
    fi
    if ! out=$(bpftool struct_ops register "$object" 2>&1); then
      die "bpftool struct_ops register $object failed: $(printf '%s' "$out" | tail -n 1)"
    fi
    offered || die "registered, but $AVAILABLE does not list $NAME"
    mkdir -p "$(dirname "$RECORD")"
    printf '%s %s\n' "$(map_id)" "$sum" >"$RECORD"
    echo "$PROG: registered $NAME, build $(printf '%.12s' "$sum") (net.ipv4.tcp_available_congestion_control: $(cat "$AVAILABLE"))"
    ;;
  unregister)
    if ! offered; then
      echo "$PROG: $NAME is not registered"
      exit 0
    fi
    [ "$(id -u)" -eq 0 ] || die "needs root (bpftool struct_ops unregister)"
    command -v bpftool >/dev/null 2>&1 || die "bpftool is missing"
    do_unregister
    echo "$PROG: unregistered $NAME"
    ;;
  status)
    if offered; then
      rec=$(cat "$RECORD" 2>/dev/null || true)
      if [ -n "$rec" ] && [ "${rec%% *}" = "$(map_id)" ]; then
        echo "$PROG: the kernel offers $NAME, build $(printf '%.12s' "${rec#* }")"
      else
        echo "$PROG: the kernel offers $NAME (build not recorded)"
      fi
    else
      echo "$PROG: $NAME is not registered (the subflows use bbr)"
    fi
    ;;
esac
