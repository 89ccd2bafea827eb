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
  bridge-setup.sh up   [--move-addresses] [--bridge br0] [--address A/P]... IF1 IF2
  bridge-setup.sh down [--bridge br0]
  bridge-setup.sh up|down -c network.conf --role tx|rx [options above to override]

up    creates the bridge (if absent), enslaves IF1 and IF2 and sets everything up, gives the
      bridge its address(es) (REDIRECT on the tx box needs an IPv4 one, and an IPv6 one for
      IPv6 clients), and turns on net.bridge.bridge-nf-call-iptables and -ip6tables so
      iptables sees bridged packets. A port that carries addresses (global scope) is
      refused, since an address on a bridge port stops working and an operator reaching
      the box through it would be cut off; --move-addresses moves them, with the routes
      through that port (the default route included), to the bridge, which also takes the
      port's MAC address so neighbours' ARP caches stay right.
      Everything up does is recorded in a state file.
down  undoes what up recorded, and only that: moves moved addresses and routes back to
      their port, removes the addresses up added, releases the ports up enslaved, deletes
      the bridge if up created it (kept if it carries addresses up did not add) and puts
      the bridge-nf-call sysctls back as they were. br_netfilter stays loaded. Without a
      state file down changes nothing.

Options:
  -c, --config FILE   read [interception] bridge, the interfaces (ROLE_lan_interface or
                      lan_interface, ROLE_wan_interface or wan_interface) and
                      ROLE_bridge_address and ROLE_bridge_address6 from FILE (needs --role)
  --role tx|rx        which box this is (picks the addresses; default tx)
  --bridge NAME       bridge device (default br0)
  --address A/P       address with prefix length; repeat for more (IPv4 and IPv6);
                      replaces the configured ones (default 192.168.2.201/24 for tx,
                      192.168.2.202/24 for rx)
  --move-addresses    up: move the ports' addresses and routes to the bridge (see above)
  --state FILE        where up records what it did (default /run/tandem-bridge/NAME.state,
                      or NAME.NETNS.state inside a named network namespace;
                      environment: TANDEM_BRIDGE_STATE)
  -h, --help          this text

Exit status: 0 done, 1 refused or failed (one line says why), 2 usage error.
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
# Adds ADDRESS to DEVICE; no error when it is already there. EXTRA: more `ip addr` words
# (brd +, noprefixroute) for a moved address.
addr_add() { # DEVICE ADDRESS [EXTRA...]
  _dev=$1
  _addr=$2
  shift 2
  if [ "$TOOLS" = ip ]; then
    # shellcheck disable=SC2068 # EXTRA is a list of words
    ip addr replace "$_addr" dev "$_dev" $@
  else
    case $_addr in
      *:*) ifconfig "$_dev" inet6 add "$_addr" 2>/dev/null || true ;;
      *) ifconfig "$_dev" "$_addr" ;;
    esac
  fi
}
# Prints DEVICE's global addresses, one per line: address/prefix, then `brd` when it has an
# IPv4 broadcast address and `noprefixroute` when it has that flag.
addr_list() {
  if [ "$TOOLS" = ip ]; then
    ip -o addr show dev "$1" scope global | awk '{
      line = $4
      for (i = 5; i <= NF; i++) {
        if ($i == "brd") line = line " brd"
        if ($i == "noprefixroute") line = line " noprefixroute"
      }
      print line
    }'
  else
    # Without iproute2: IPv4 from ifconfig, IPv6 (global scope 00) from procfs.
    ifconfig "$1" 2>/dev/null | awk '$1 == "inet" { print $2 }'
    awk -v dev="$1" '$6 == dev && $4 == "00" { print $1 "/" $3 }' /proc/net/if_inet6 2>/dev/null
  fi
}
addr_has() { # DEVICE ADDRESS
  addr_list "$1" | awk -v a="$2" '$1 == a { found = 1 } END { exit !found }'
}
addr_del() { # DEVICE ADDRESS
  if [ "$TOOLS" = ip ]; then ip addr del "$2" dev "$1"; fi
}
# Prints the routes of the main table that go through DEVICE, family -4 or -6, one per line
# in `ip route` syntax without `dev`: those a moved address needs moved with it. Left out:
# the kernel's own (they follow the address), router advertisements' (they come back by
# themselves on the bridge) and anything with a lifetime; flags `ip route add` does not take
# are dropped.
route_list() { # DEVICE FAMILY
  ip "$2" route show table main dev "$1" | awk '
    / proto kernel / || / proto ra / || / expires / { next }
    {
      line = ""
      for (i = 1; i <= NF; i++) {
        if ($i == "linkdown" || $i == "dead" || $i == "offload" || $i == "trap" || $i == "rt_offload" || $i == "rt_trap") continue
        line = (line == "" ? $i : line " " $i)
      }
      print line
    }'
}

# --- the state file: what up did, so that down undoes exactly that -------------------------
#
# One record a line, appended right after the action succeeded (a failure part-way still
# leaves down a true record):
#   created BRIDGE                  the bridge did not exist
#   port PORT                       PORT was enslaved by up
#   address A/P                     A/P was added to the bridge (it was not there)
#   moved PORT A/P [brd] [noprefixroute]   A/P was moved from PORT to the bridge
#   route PORT -4|-6 SPEC...        the route SPEC via PORT was moved to the bridge
#   sysctl NAME VALUE               the sysctl NAME was VALUE before up set it to 1

# The default state file: one per bridge and per network namespace (namespaces share /run).
# In /run (a reboot loses the bridge and the record together), in a directory of its own:
# /run/tandem belongs to the proxies' units (RuntimeDirectory), which systemd may empty.
default_state_file() {
  _ns=$(ip netns identify 2>/dev/null || true)
  printf '/run/tandem-bridge/%s%s.state\n' "$BRIDGE" "${_ns:+.$_ns}"
}

# record LINE: appends LINE to the state file unless it is there already (up twice).
record() {
  if [ ! -f "$STATE" ] || ! grep -qxF -- "$*" "$STATE"; then
    printf '%s\n' "$*" >>"$STATE"
  fi
}

# recorded KIND: the records of KIND, without the kind, one a line.
recorded() {
  [ -f "$STATE" ] || return 0
  awk -v kind="$1" '$1 == kind { sub(/^[^ ]+ /, ""); print }' "$STATE"
}

# --- br_netfilter ------------------------------------------------------------------------

enable_br_netfilter() {
  # /proc/sys/net/bridge exists once br_netfilter is loaded or built in; modprobe only then.
  if [ ! -d /proc/sys/net/bridge ] && command -v modprobe >/dev/null 2>&1; then
    modprobe br_netfilter 2>/dev/null || true
  fi
  [ -d /proc/sys/net/bridge ] ||
    die "br_netfilter is not available (modprobe br_netfilter failed): iptables would not see bridged traffic"
  # Per network namespace: this sets the namespace the script runs in. The value before is
  # recorded (once: a second up must not record its own 1) so that down restores it.
  for name in bridge-nf-call-iptables bridge-nf-call-ip6tables; do
    old=$(cat "/proc/sys/net/bridge/$name")
    if [ "$old" != 1 ]; then
      if [ -z "$(recorded sysctl | awk -v n="net.bridge.$name" '$1 == n')" ]; then
        record sysctl "net.bridge.$name" "$old"
      fi
      printf '1\n' >"/proc/sys/net/bridge/$name"
    fi
  done
  say "net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1"
}

# --- up / down ---------------------------------------------------------------------------

# Moves PORT's addresses and routes to the bridge; the port is already enslaved. Addresses
# are added to the bridge and the routes replaced onto it before the port loses anything,
# so at no moment is the box without a working address and route.
move_addresses() { # PORT
  _routes4=$(route_list "$1" -4)
  _routes6=$(route_list "$1" -6)
  _moved=$(addr_list "$1")
  printf '%s\n' "$_moved" | while read -r address extra; do
    [ -n "$address" ] || continue
    addr_add "$BRIDGE" "$address" $(extra_words "$address" "$extra")
    record moved "$1" "$address" $extra
    say "moved address $address from $1 to $BRIDGE"
  done
  for fam in -4 -6; do
    if [ "$fam" = -4 ]; then routes=$_routes4; else routes=$_routes6; fi
    printf '%s\n' "$routes" | while read -r spec; do
      [ -n "$spec" ] || continue
      # shellcheck disable=SC2086 # the route words are meant to split
      ip "$fam" route replace $spec dev "$BRIDGE"
      record route "$1" "$fam" "$spec"
      say "moved route '$spec' from $1 to $BRIDGE"
    done
  done
  printf '%s\n' "$_moved" | while read -r address extra; do
    [ -n "$address" ] || continue
    addr_del "$1" "$address"
  done
}

# The `ip addr` words for a recorded address (ADDRESS FLAGS): its flags, and nodad for IPv6,
# whose duplicate address detection already passed on the port (without it the address is
# unusable, "tentative", for a second or two after the move).
extra_words() {
  case $1 in
    *:*) printf 'nodad ' ;;
  esac
  for word in $2; do
    case $word in
      brd) printf 'brd + ' ;;
      noprefixroute) printf 'noprefixroute ' ;;
    esac
  done
}

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
  fi
  # Refuse before changing anything: an address on a port stops working once it is enslaved.
  movers=''
  for port in "$IF1" "$IF2"; do
    [ "$(master_of "$port")" != "$BRIDGE" ] || continue
    found=$(addr_list "$port" | awk '{ print $1 }' | tr '\n' ' ')
    [ -n "$found" ] || continue
    if [ "$MOVE" -eq 0 ]; then
      die "$port carries ${found% } and would lose it on $BRIDGE (cutting off access through it): run again with --move-addresses to move its addresses and routes to $BRIDGE"
    fi
    [ "$TOOLS" = ip ] || die "--move-addresses needs ip (iproute2): apt-get install iproute2"
    movers="$movers $port"
  done

  mkdir -p "$(dirname "$STATE")"
  if link_exists "$BRIDGE"; then
    say "bridge $BRIDGE already exists"
  else
    bridge_add "$BRIDGE"
    record created "$BRIDGE"
    say "created bridge $BRIDGE"
    # The bridge answers for the moved addresses: with the port's MAC address, neighbours'
    # ARP and ND caches stay right and nothing has to time out.
    for port in $movers; do
      ip link set dev "$BRIDGE" address "$(cat "/sys/class/net/$port/address")"
      break
    done
  fi
  link_up "$BRIDGE"
  for port in "$IF1" "$IF2"; do
    if [ "$(master_of "$port")" = "$BRIDGE" ]; then
      say "$port already a port of $BRIDGE"
    else
      port_attach "$port" "$BRIDGE"
      record port "$port"
      say "$port added to $BRIDGE"
    fi
    link_up "$port"
  done
  say "$IF1 $IF2 $BRIDGE up"
  for port in $movers; do
    move_addresses "$port"
  done
  for address in $ADDRESSES; do
    case $address in
      *:*)
        if ipv6_disabled; then
          warn "note: IPv6 is disabled on this box: not adding $address"
          continue
        fi
        ;;
    esac
    if ! addr_has "$BRIDGE" "$address"; then
      addr_add "$BRIDGE" "$address"
      record address "$address"
    fi
    say "address $address on $BRIDGE"
  done
  enable_br_netfilter
}

do_down() {
  if [ ! -f "$STATE" ]; then
    if link_exists "$BRIDGE"; then
      die "no record of what up did ($STATE missing): nothing changed; remove $BRIDGE by hand (ip link del $BRIDGE) if you mean to"
    fi
    say "bridge $BRIDGE does not exist: nothing to do"
    return 0
  fi
  if link_exists "$BRIDGE"; then
    is_bridge "$BRIDGE" || die "$BRIDGE is not a bridge: not touching it"
    # Ports first: a moved address works again on its port only once the port is free.
    for port in $(recorded port); do
      if link_exists "$port" && [ "$(master_of "$port")" = "$BRIDGE" ]; then
        port_detach "$port" "$BRIDGE"
        say "released $port from $BRIDGE"
      fi
    done
    recorded moved | while read -r port address extra; do
      link_exists "$port" || { warn "$port is gone: $address stays on $BRIDGE"; continue; }
      addr_add "$port" "$address" $(extra_words "$address" "$extra")
      say "moved address $address back to $port"
    done
    recorded route | while read -r port fam spec; do
      link_exists "$port" || continue
      # shellcheck disable=SC2086 # the route words are meant to split
      if ip "$fam" route replace $spec dev "$port"; then
        say "moved route '$spec' back to $port"
      else
        warn "could not move route '$spec' back to $port"
      fi
    done
    { recorded moved | awk '{ print $2 }'; recorded address; } | while read -r address; do
      if addr_has "$BRIDGE" "$address"; then
        addr_del "$BRIDGE" "$address"
        say "removed address $address from $BRIDGE"
      fi
    done
    if [ -n "$(recorded created)" ]; then
      foreign=$(addr_list "$BRIDGE" | awk '{ print $1 }' | tr '\n' ' ')
      if [ -n "$foreign" ]; then
        warn "kept bridge $BRIDGE: it carries addresses up did not add (${foreign% })"
      else
        bridge_del "$BRIDGE"
        say "deleted bridge $BRIDGE"
      fi
    fi
  else
    say "bridge $BRIDGE does not exist"
  fi
  recorded sysctl | while read -r name value; do
    path=/proc/sys/$(printf '%s' "$name" | tr . /)
    if [ -w "$path" ]; then
      printf '%s\n' "$value" >"$path"
      say "$name=$value (as before up)"
    fi
  done
  rm -f "$STATE"
}

# --- command line ------------------------------------------------------------------------

COMMAND=''
CONFIG=''
ROLE=''
BRIDGE=''
ADDRESSES=''
MOVE=0
STATE=${TANDEM_BRIDGE_STATE:-}
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
      # A bad value on the command line is a usage error (the check prints the line).
      (check_address --address "$2") || exit 2
      ADDRESSES="$ADDRESSES $2"
      shift 2
      ;;
    --move-addresses)
      MOVE=1
      shift
      ;;
    --state)
      need_value "$1" $#
      STATE=$2
      shift 2
      ;;
    -*) usage_die "unknown option $1 (see --help)" ;;
    *)
      if [ -z "$COMMAND" ]; then
        COMMAND=$1
      else
        npos=$((npos + 1))
        case $npos in
          1) IF1=$1 ;;
          2) IF2=$1 ;;
          *) usage_die "too many interfaces: expected IF1 IF2" ;;
        esac
      fi
      shift
      ;;
  esac
done

case $COMMAND in
  up | down) ;;
  '') usage_die "expected up or down (see --help)" ;;
  *) usage_die "unknown command '$COMMAND': expected up or down (see --help)" ;;
esac
[ -z "$ROLE" ] || check_role "$ROLE"
[ -z "$CONFIG" ] || [ -n "$ROLE" ] || usage_die "-c needs --role tx or --role rx"
check_config
[ -n "$ROLE" ] || ROLE=tx

# Command line > config file > the defaults of src/common/config/schema.ts.
[ -n "$BRIDGE" ] || BRIDGE=$(conf_get interception bridge br0)
check_ifname interception.bridge "$BRIDGE"
if [ "$COMMAND" = down ]; then
  # down reads its ports from the state file; interfaces named on the command line (as an
  # older version took them) are accepted and ignored.
  :
elif [ "$npos" -eq 0 ] && [ -n "$CONFIG" ]; then
  IF1=$(conf_role_get "$ROLE" lan_interface eth0)
  IF2=$(conf_role_get "$ROLE" wan_interface eth1)
  check_ifname "interception.${ROLE}_lan_interface or lan_interface" "$IF1"
  check_ifname "interception.${ROLE}_wan_interface or wan_interface" "$IF2"
elif [ "$npos" -ne 2 ]; then
  usage_die "$COMMAND needs two interfaces: IF1 IF2 (or -c FILE --role tx|rx)"
else
  check_ifname IF1 "$IF1"
  check_ifname IF2 "$IF2"
fi
if [ -z "$ADDRESSES" ]; then
  if [ "$ROLE" = rx ]; then default=192.168.2.202/24; else default=192.168.2.201/24; fi
  ADDRESSES=$(conf_get interception "${ROLE}_bridge_address" "$default")
  check_address "interception.${ROLE}_bridge_address" "$ADDRESSES"
  address6=$(conf_get interception "${ROLE}_bridge_address6" '')
  if [ -n "$address6" ]; then
    check_address "interception.${ROLE}_bridge_address6" "$address6"
    case $address6 in
      *:*) ;;
      *) die "interception.${ROLE}_bridge_address6: expected an IPv6 address/prefix like fd00:2::201/64, got '$address6'" ;;
    esac
    ADDRESSES="$ADDRESSES $address6"
  fi
fi

is_root || die "must run as root (it changes links, addresses and sysctls)"
pick_tools
[ -n "$STATE" ] || STATE=$(default_state_file)
# $ADDRESSES is split on spaces below: check_address let no space or glob character through.
if [ "$COMMAND" = up ]; then do_up; else do_down; fi
