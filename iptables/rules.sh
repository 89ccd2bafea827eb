#!/bin/sh
# Prints the iptables/ip6tables rules of one Tandem box as a shell script, generated from
# network.conf. iptables/apply.sh runs that script (or prints it with --dry-run), so what you
# read is exactly what gets applied. Run `iptables/rules.sh --help` for the options.
#
# All iptables rules live in chains of our own (TANDEM_PRE in mangle and in nat), reached by one
# jump from PREROUTING. Applying flushes and refills our chains and adds a jump only when it is
# missing, so applying twice leaves one copy; removing deletes our jumps and chains only. The
# rx box's source transparency adds an `ip rule` (preference 1000), routing table 7462 and the
# nft table `bridge tandem`, replaced whole on apply and deleted on --remove.
set -eu

PROG=rules.sh
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=iptables/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<'USAGE'
Usage: iptables/rules.sh [-c network.conf] [--role tx|rx] [--family 4|6|all] [--remove]

Prints the commands that install (or, with --remove, delete) Tandem's rules on this box.

tx box (from [interception] and [tx_proxy] local_port):
  mangle TANDEM_PRE: client SYNs arriving on bridge port lan_interface go to NFQUEUE
    queue_num with --queue-bypass (no proxy bound: SYNs pass untouched). exclude_ports
    RETURN first and, when ports is set, only those destination ports are queued (a coarse
    filter; tx_proxy applies the full policy, subnets included).
  nat TANDEM_PRE: TCP packets carrying `mark` (tx_proxy's accept verdict) are REDIRECTed to
    local_port; conntrack keeps the redirect for the rest of the connection.
rx box, when interception.transparent is true (the default; see docs/transparency.md):
  rx_proxy connects to destinations from the client's own address (IP_TRANSPARENT). The
  replies are addressed to the client, so the bridge would pass them on; these rules take
  them to rx_proxy's socket instead, and only them:
  mangle TANDEM_PRE: TCP (and ICMP errors) arriving on bridge port lan_interface that
    belong to a local transparent socket (-m socket --transparent) get `mark`.
  ip rule/route: marked packets coming up through the bridge are local (table 7462).
  nft table bridge tandem: marked frames get lan_interface's MAC address and packet type
    host, so the bridge hands them up to the IP stack instead of forwarding them.
  Needs net.bridge.bridge-nf-call-iptables (and -ip6tables) = 1 and nft (nftables).
  With interception.transparent = false (routed deployments) the rx box gets no rules and
  applying removes the ones above.

Options:
  -c, --config FILE   network.conf to read (default: the built-in defaults)
  --role tx|rx        which box (default tx)
  --family 4|6|all    iptables (4), ip6tables (6) or both (default all)
  --remove            print the commands deleting our chains and jumps instead
  -h, --help          this text
USAGE
}

# Our chain in both tables; the PREROUTING jump is the only rule we add outside it.
CHAIN=TANDEM_PRE

# emit_chain TOOL TABLE RULE...: our chain in TABLE refilled with RULE (one argument per rule,
# without the leading "-A CHAIN"), then the jump from PREROUTING when it is not there yet.
emit_chain() {
  tool=$1
  table=$2
  shift 2
  # -N fails when the chain exists: then empty it instead.
  echo "$tool -w -t $table -N $CHAIN 2>/dev/null || run $tool -w -t $table -F $CHAIN"
  for rule in "$@"; do
    echo "run $tool -w -t $table -A $CHAIN $rule"
  done
  echo "$tool -w -t $table -C PREROUTING -j $CHAIN 2>/dev/null || run $tool -w -t $table -I PREROUTING 1 -j $CHAIN"
}

# emit_remove TOOL TABLE: our jumps (every copy) and chain deleted, if present.
emit_remove() {
  echo "if $1 -w -t $2 -S $CHAIN >/dev/null 2>&1; then"
  echo "  while $1 -w -t $2 -D PREROUTING -j $CHAIN 2>/dev/null; do :; done"
  echo "  $1 -w -t $2 -F $CHAIN"
  echo "  $1 -w -t $2 -X $CHAIN"
  echo "fi"
}

# multiport_groups NAME LIST: LIST (80,443,5000-5999) as multiport --dports arguments, one
# group per line; a group holds at most 15 ports, a range counting as two (the kernel's limit).
multiport_groups() {
  awk -v prog="$PROG" -v key="$1" -v list="$2" '
    function bad(item) {
      printf "%s: %s: expected ports like 80,443,5000-5999, got \"%s\"\n", prog, key, item > "/dev/stderr"
      exit 1
    }
    BEGIN {
      count = split(list, items, /[ \t,]+/)
      for (i = 1; i <= count; i++) {
        item = items[i]
        if (item == "") continue
        if (item !~ /^[0-9]+(-[0-9]+)?$/) bad(item)
        n = split(item, r, "-")
        from = r[1] + 0
        to = r[n] + 0
        if (length(r[1]) > 5 || length(r[n]) > 5 || from < 1 || to > 65535 || from > to) bad(item)
        spec = (from == to ? from : from ":" to)
        cost = (from == to ? 1 : 2)
        if (used + cost > 15) {
          print group
          group = ""
          used = 0
        }
        group = (group == "" ? spec : group "," spec)
        used += cost
      }
      if (group != "") print group
    }'
}

# Rules of the tx box for TOOL (iptables or ip6tables).
tx_rules() {
  tool=$1
  match="-i $BRIDGE -m physdev --physdev-in $LAN_INTERFACE -p tcp --syn"
  queue="-j NFQUEUE --queue-num $QUEUE_NUM --queue-bypass"
  set --
  for group in $EXCLUDE_GROUPS; do
    set -- "$@" "$match -m multiport --dports $group -j RETURN"
  done
  if [ -z "$PORT_GROUPS" ]; then
    set -- "$@" "$match $queue"
  fi
  for group in $PORT_GROUPS; do
    set -- "$@" "$match -m multiport --dports $group $queue"
  done
  echo "# $tool mangle: client SYNs from $LAN_INTERFACE to NFQUEUE $QUEUE_NUM (tx_proxy decides)"
  emit_chain "$tool" mangle "$@"
  echo "# $tool nat: flows tx_proxy marked $MARK_HEX go to its port $LOCAL_PORT"
  emit_chain "$tool" nat "-i $BRIDGE -p tcp -m mark --mark $MARK_HEX -j REDIRECT --to-ports $LOCAL_PORT"
}

# --- rx box: source transparency (docs/transparency.md) ----------------------------------
#
# rx_proxy's sockets are bound to the client's address. Their replies cross the rx box's
# bridge addressed to the client's MAC and IP; br_netfilter runs PREROUTING on them but
# re-routes a bridged packet only when its destination address changed, so neither a mark
# nor TPROXY alone makes it local (and this kernel has no bridge "broute"). Three pieces:
#  1. mangle (in br_netfilter's PREROUTING pass): a packet whose 4-tuple is one of our
#     transparent sockets (-m socket --transparent; also ICMP errors quoting one) gets MARK.
#  2. nft, bridge family, prerouting after br_netfilter (priority > 0): a marked frame gets a
#     local destination MAC (the LAN port's own) and packet type host, so the bridge passes
#     it up through the bridge device instead of forwarding it.
#  3. policy routing: a marked packet coming in on the bridge device is local.
# Everything else, direct flows and other hosts included, is bridged untouched.

# Fixed numbers, so --remove needs no config: the routing table and the `ip rule` preference
# (arbitrary; chosen to be unlikely to clash with a box's own policy routing), and the name of
# the nft table.
RX_ROUTE_TABLE=7462
RX_RULE_PREF=1000
NFT_TABLE=tandem
# After br_netfilter's hook (NF_BR_PRI_BRNF = 0), where iptables has set the mark.
NFT_PRIORITY=100

# Prints -4 or -6 for TOOL (iptables or ip6tables).
ip_family_opt() {
  if [ "$1" = iptables ]; then echo -4; else echo -6; fi
}

# Lines of the generated script: install nft when missing (root with apt-get), else stop
# with a one-line error.
emit_need_nft() {
  cat <<'NEED'
if ! command -v nft >/dev/null 2>&1; then
  if [ -z "${TANDEM_NO_INSTALL:-}" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "apply.sh: nft not found: installing nftables" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables; } >/dev/null 2>&1 || true
  fi
  command -v nft >/dev/null 2>&1 || { echo "apply.sh: nft not found and could not be installed: apt-get install nftables (needed by interception.transparent)" >&2; exit 1; }
fi
NEED
}

# Per TOOL: the mark rules and the policy routing of one IP family.
rx_transparency_rules() {
  tool=$1
  ipf=$(ip_family_opt "$tool")
  if [ "$tool" = iptables ]; then
    icmp=icmp
    any=0.0.0.0/0
    sysctl=bridge-nf-call-iptables
  else
    icmp=ipv6-icmp
    any=::/0
    sysctl=bridge-nf-call-ip6tables
  fi
  mark="-i $BRIDGE -m physdev --physdev-in $LAN_INTERFACE"
  set_mark="-m socket --transparent -j MARK --set-mark $MARK_HEX"
  echo "# $tool: bridged packets reach iptables only with net.bridge.$sysctl = 1"
  echo "[ \"\$(cat /proc/sys/net/bridge/$sysctl 2>/dev/null)\" = 1 ] || { echo \"apply.sh: net.bridge.$sysctl is not 1: run bridge-setup.sh up first\" >&2; exit 1; }"
  echo "# $tool mangle: packets from $LAN_INTERFACE for rx_proxy's transparent sockets get mark $MARK_HEX"
  emit_chain "$tool" mangle "$mark -p tcp $set_mark" "$mark -p $icmp $set_mark"
  echo "# ip $ipf: marked packets coming up through $BRIDGE are local (table $RX_ROUTE_TABLE)"
  echo "while ip $ipf rule del pref $RX_RULE_PREF lookup $RX_ROUTE_TABLE 2>/dev/null; do :; done"
  echo "run ip $ipf rule add pref $RX_RULE_PREF fwmark $MARK_HEX iif $BRIDGE lookup $RX_ROUTE_TABLE"
  echo "run ip $ipf route replace local $any dev lo table $RX_ROUTE_TABLE"
}

# Once for all families: the nft bridge table. The MAC is read when the script runs.
rx_bridge_rules() {
  case $FAMILY in
    4) types=ip ;;
    6) types=ip6 ;;
    *) types='{ ip, ip6 }' ;;
  esac
  echo "# nft bridge: marked frames from $LAN_INTERFACE go up to the IP stack, not across the bridge"
  emit_need_nft
  echo "mac=\$(cat /sys/class/net/$LAN_INTERFACE/address 2>/dev/null) || { echo \"apply.sh: interface $LAN_INTERFACE not found\" >&2; exit 1; }"
  # Declaring the table first lets the same transaction delete and refill it: atomic replace.
  echo "run nft -f - <<NFT"
  echo "table bridge $NFT_TABLE"
  echo "delete table bridge $NFT_TABLE"
  echo "table bridge $NFT_TABLE {"
  echo "  chain transparent {"
  echo "    type filter hook prerouting priority $NFT_PRIORITY; policy accept;"
  echo "    iifname \"$LAN_INTERFACE\" ether type $types meta mark $MARK_HEX counter ether daddr set \$mac meta pkttype set host"
  echo "  }"
  echo "}"
  echo "NFT"
}

# Per TOOL: deletes the policy routing of one family (the mangle chain goes with emit_remove).
emit_rx_remove() {
  ipf=$(ip_family_opt "$1")
  echo "if command -v ip >/dev/null 2>&1; then"
  echo "  while ip $ipf rule del pref $RX_RULE_PREF lookup $RX_ROUTE_TABLE 2>/dev/null; do :; done"
  echo "  ip $ipf route flush table $RX_ROUTE_TABLE 2>/dev/null || true"
  echo "fi"
}

# Deletes the nft bridge table, if present.
emit_nft_remove() {
  echo "if command -v nft >/dev/null 2>&1 && nft list table bridge $NFT_TABLE >/dev/null 2>&1; then"
  echo "  nft delete table bridge $NFT_TABLE"
  echo "fi"
}

rx_rules() {
  if [ "$TRANSPARENT" = true ]; then
    rx_transparency_rules "$1"
  else
    echo "# $1: interception.transparent is false: no rx rules; removing any left from before"
    emit_remove "$1" mangle
    emit_rx_remove "$1"
  fi
}

# --- command line ------------------------------------------------------------------------

CONFIG=''
ROLE=tx
FAMILY=all
REMOVE=0

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
    --family)
      need_value "$1" $#
      FAMILY=$2
      shift 2
      ;;
    --remove)
      REMOVE=1
      shift
      ;;
    *) usage_die "unknown argument $1 (see --help)" ;;
  esac
done

check_role "$ROLE"
case $FAMILY in
  4) TOOLS=iptables ;;
  6) TOOLS=ip6tables ;;
  all) TOOLS='iptables ip6tables' ;;
  *) usage_die "bad --family '$FAMILY': expected 4, 6 or all" ;;
esac

echo "#!/bin/sh"
if [ "$REMOVE" -eq 1 ]; then
  # Independent of role and config: removes whatever Tandem chains are installed.
  echo "# Tandem: remove our iptables chains and jumps (generated by iptables/rules.sh)"
  echo "set -eu"
  for tool in $TOOLS; do
    for table in mangle nat; do
      emit_remove "$tool" "$table"
    done
    emit_rx_remove "$tool"
  done
  # The nft table serves both families: removed with the last of them.
  [ "$FAMILY" != all ] || emit_nft_remove
  exit 0
fi

# The loader validates every value and fills in the defaults.
check_config
BRIDGE=$(conf_get interception bridge)
LAN_INTERFACE=$(conf_role_get "$ROLE" lan_interface)
MARK_HEX=$(printf '0x%x' "$(conf_get interception mark)")
if [ "$ROLE" = tx ]; then
  QUEUE_NUM=$(conf_get interception queue_num)
  LOCAL_PORT=$(conf_get tx_proxy local_port)
  PORT_GROUPS=$(multiport_groups interception.ports "$(conf_get interception ports)") || exit 1
  EXCLUDE_GROUPS=$(multiport_groups interception.exclude_ports \
    "$(conf_get interception exclude_ports)") || exit 1
  if [ "$(conf_get interception enabled)" != true ]; then
    warn "note: [interception] enabled is not true: tx_proxy will not read the queue, SYNs bypass it"
  fi
else
  TRANSPARENT=$(conf_get interception transparent)
fi

echo "# Tandem: $ROLE box rules from ${CONFIG:-built-in defaults} (generated by iptables/rules.sh)"
echo "set -eu"
# Every command that must succeed goes through run, so a failure names the command itself
# (apply.sh then rolls back what this script had applied).
cat <<'RUN'
run() {
  "$@" && return 0
  status=$?
  echo "apply.sh: failed (exit $status): $*" >&2
  exit "$status"
}
RUN
for tool in $TOOLS; do
  if [ "$ROLE" = tx ]; then tx_rules "$tool"; else rx_rules "$tool"; fi
done
if [ "$ROLE" = rx ]; then
  if [ "$TRANSPARENT" = true ]; then
    rx_bridge_rules
  elif [ "$FAMILY" = all ]; then
    emit_nft_remove
  fi
fi
