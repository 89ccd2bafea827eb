#!/bin/sh
# Bridges a Tandem box's two interfaces on br0 so that traffic passes through it unchanged
# while iptables still sees it (br_netfilter). Idempotent: `up` twice or `down` twice is fine.
# Run `bridge-setup.sh --help` for the options.
set -eu

PROG=bridge-setup.sh
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=iptables/lib.sh
. "$HERE/iptables/lib.sh"

usage() {
  cat <<'USAGE'
Usage:
  bridge-setup.sh up   [--bridge br0] [--address 192.168.2.201/24]... IF1 IF2
  bridge-setup.sh down [--bridge br0] [IF1 IF2]
  bridge-setup.sh up|down -c network.conf --role tx|rx [options above to override]

up    creates the bridge (if absent), enslaves IF1 and IF2 and sets everything up, gives the
      bridge its address(es) (REDIRECT on the tx box needs an IPv4 one), and turns on
      net.bridge.bridge-nf-call-iptables and -ip6tables so iptables sees bridged packets.
down  removes the bridge's addresses, releases its ports (IF1 IF2, or all of them) and deletes
      the bridge. The bridge-nf-call sysctls are left as they are.

Options:
  -c, --config FILE   read [interception] bridge, lan_interface, wan_interface and
                      tx_bridge_address or rx_bridge_address from FILE (needs --role)
  --role tx|rx        which box this is (picks the address; default tx)
  --bridge NAME       bridge device (default br0)
  --address A/P       address with prefix length; repeat for more (IPv4 and IPv6);
                      replaces the configured one (default 192.168.2.201/24 for tx,
                      192.168.2.202/24 for rx)
  -h, --help          this text
USAGE
}

# --- the link tools: ip (iproute2), or brctl + ifconfig where ip is missing ---------------

# Interface state comes from sysfs so it needs no tool at all.
link_exists() { [ -e "/sys/class/net/$1" ]; }
is_bridge() { [ -d "/sys/class/net/$1/bridge" ]; }
master_of() {
  if [ -e "/sys/class/net/$1/master" ]; then
    basename "$(readlink "/sys/class/net/$1/master")"
  fi
}

pick_tools() {
  if ensure_tool ip iproute2; then
    TOOLS=ip
  elif command -v brctl >/dev/null 2>&1 && command -v ifconfig >/dev/null 2>&1; then
    TOOLS=brctl
  else
    die "ip (iproute2) not found and could not be installed: apt-get install iproute2"
  fi
}

bridge_add() {
  if [ "$TOOLS" = ip ]; then ip link add name "$1" type bridge; else brctl addbr "$1"; fi
}
bridge_del() {
  if [ "$TOOLS" = ip ]; then ip link del dev "$1"; else ifconfig "$1" down && brctl delbr "$1"; fi
}
port_attach() { # PORT BRIDGE
  if [ "$TOOLS" = ip ]; then ip link set dev "$1" master "$2"; else brctl addif "$2" "$1"; fi
}
port_detach() { # PORT BRIDGE
  if [ "$TOOLS" = ip ]; then ip link set dev "$1" nomaster; else brctl delif "$2" "$1"; fi
}
link_up() {
  if [ "$TOOLS" = ip ]; then ip link set dev "$1" up; else ifconfig "$1" up; fi
}
# Adds ADDRESS to DEVICE; no error when it is already there.
addr_add() { # DEVICE ADDRESS
  if [ "$TOOLS" = ip ]; then
    ip addr replace "$2" dev "$1"
  else
    case $2 in
      *:*) ifconfig "$1" inet6 add "$2" 2>/dev/null || true ;;
      *) ifconfig "$1" "$2" ;;
    esac
  fi
}
# Prints DEVICE's global addresses, one per line, as address/prefix.
addr_list() {
  if [ "$TOOLS" = ip ]; then
    ip -o addr show dev "$1" scope global | awk '{ print $4 }'
  fi
}
addr_del() { # DEVICE ADDRESS
  if [ "$TOOLS" = ip ]; then ip addr del "$2" dev "$1"; fi
}

# --- br_netfilter ------------------------------------------------------------------------

enable_br_netfilter() {
  # /proc/sys/net/bridge exists once br_netfilter is loaded or built in; modprobe only then.
  if [ ! -d /proc/sys/net/bridge ] && command -v modprobe >/dev/null 2>&1; then
    modprobe br_netfilter 2>/dev/null || true
  fi
  [ -d /proc/sys/net/bridge ] ||
    die "br_netfilter is not available (modprobe br_netfilter failed): iptables would not see bridged traffic"
  # Per network namespace: this sets the namespace the script runs in.
  printf '1\n' >/proc/sys/net/bridge/bridge-nf-call-iptables
  printf '1\n' >/proc/sys/net/bridge/bridge-nf-call-ip6tables
  say "net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1"
}

# --- up / down ---------------------------------------------------------------------------

do_up() {
  for port in "$IF1" "$IF2"; do
    link_exists "$port" || die "interface $port does not exist"
  done
  [ "$IF1" != "$IF2" ] || die "IF1 and IF2 are the same interface ($IF1)"
  for port in "$IF1" "$IF2"; do
    [ "$port" != "$BRIDGE" ] || die "$port is the bridge itself: give the two ports to enslave"
  done
  if link_exists "$BRIDGE"; then
    is_bridge "$BRIDGE" || die "$BRIDGE exists and is not a bridge"
    say "bridge $BRIDGE already exists"
  else
    bridge_add "$BRIDGE"
    say "created bridge $BRIDGE"
  fi
  for port in "$IF1" "$IF2"; do
    if [ "$(master_of "$port")" = "$BRIDGE" ]; then
      say "$port already a port of $BRIDGE"
    else
      port_attach "$port" "$BRIDGE"
      say "$port added to $BRIDGE"
    fi
    link_up "$port"
  done
  link_up "$BRIDGE"
  say "$IF1 $IF2 $BRIDGE up"
  for address in $ADDRESSES; do
    addr_add "$BRIDGE" "$address"
    say "address $address on $BRIDGE"
  done
  enable_br_netfilter
}

do_down() {
  if ! link_exists "$BRIDGE"; then
    say "bridge $BRIDGE does not exist: nothing to do"
    return 0
  fi
  is_bridge "$BRIDGE" || die "$BRIDGE is not a bridge: not touching it"
  for address in $(addr_list "$BRIDGE"); do
    addr_del "$BRIDGE" "$address"
    say "removed address $address from $BRIDGE"
  done
  if [ -n "$IF1" ]; then
    set -- "$IF1" "$IF2"
  else
    set -- "/sys/class/net/$BRIDGE/brif/"*
  fi
  for port in "$@"; do
    port=${port##*/}
    if link_exists "$port" && [ "$(master_of "$port")" = "$BRIDGE" ]; then
      port_detach "$port" "$BRIDGE"
      say "released $port from $BRIDGE"
    fi
  done
  bridge_del "$BRIDGE"
  say "deleted bridge $BRIDGE"
}

# --- command line ------------------------------------------------------------------------

COMMAND=''
CONFIG=''
ROLE=''
BRIDGE=''
ADDRESSES=''
IF1=''
IF2=''
npos=0

while [ $# -gt 0 ]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    -c | --config)
      need_value "$1" $#
      CONFIG=$2
      shift 2
      ;;
    --role)
      need_value "$1" $#
      ROLE=$2
      shift 2
      ;;
    --bridge)
      need_value "$1" $#
      BRIDGE=$2
      shift 2
      ;;
    --address)
      need_value "$1" $#
      check_address --address "$2"
      ADDRESSES="$ADDRESSES $2"
      shift 2
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      if [ -z "$COMMAND" ]; then
        COMMAND=$1
      else
        npos=$((npos + 1))
        case $npos in
          1) IF1=$1 ;;
          2) IF2=$1 ;;
          *) die "too many interfaces: expected IF1 IF2" ;;
        esac
      fi
      shift
      ;;
  esac
done

case $COMMAND in
  up | down) ;;
  '') die "expected up or down (see --help)" ;;
  *) die "unknown command '$COMMAND': expected up or down (see --help)" ;;
esac
[ -z "$ROLE" ] || check_role "$ROLE"
[ -z "$CONFIG" ] || [ -n "$ROLE" ] || die "-c needs --role tx or --role rx"
check_config
[ -n "$ROLE" ] || ROLE=tx

# Command line > config file > the defaults of src/common/config/schema.ts.
[ -n "$BRIDGE" ] || BRIDGE=$(conf_get interception bridge br0)
check_ifname interception.bridge "$BRIDGE"
if [ "$npos" -eq 0 ] && [ -n "$CONFIG" ]; then
  IF1=$(conf_get interception lan_interface eth0)
  IF2=$(conf_get interception wan_interface eth1)
  check_ifname interception.lan_interface "$IF1"
  check_ifname interception.wan_interface "$IF2"
elif [ "$npos" -eq 1 ] || { [ "$npos" -eq 0 ] && [ "$COMMAND" = up ]; }; then
  die "$COMMAND needs two interfaces: IF1 IF2 (or -c FILE --role tx|rx)"
else
  [ "$npos" -eq 0 ] || check_ifname IF1 "$IF1"
  [ "$npos" -eq 0 ] || check_ifname IF2 "$IF2"
fi
if [ -z "$ADDRESSES" ]; then
  if [ "$ROLE" = rx ]; then default=192.168.2.202/24; else default=192.168.2.201/24; fi
  ADDRESSES=$(conf_get interception "${ROLE}_bridge_address" "$default")
  check_address "interception.${ROLE}_bridge_address" "$ADDRESSES"
fi

is_root || die "must run as root (it changes links, addresses and sysctls)"
pick_tools
# $ADDRESSES is split on spaces below: check_address let no space or glob character through.
if [ "$COMMAND" = up ]; then do_up; else do_down; fi
