#!/bin/sh
# Prints the iptables/ip6tables rules of one Tandem box as a shell script, generated from
# network.conf. iptables/apply.sh runs that script (or prints it with --dry-run), so what you
# read is exactly what gets applied. Run `iptables/rules.sh --help` for the options.
#
# All rules live in chains of our own (TANDEM_PRE in mangle and in nat), reached by one jump
# from PREROUTING. Applying flushes and refills our chains and adds a jump only when it is
# missing, so applying twice leaves one copy; removing deletes our jumps and chains only.
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
rx box: no rules yet (source transparency will come here).

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
  echo "$tool -w -t $table -N $CHAIN 2>/dev/null || $tool -w -t $table -F $CHAIN"
  for rule in "$@"; do
    echo "$tool -w -t $table -A $CHAIN $rule"
  done
  echo "$tool -w -t $table -C PREROUTING -j $CHAIN 2>/dev/null || $tool -w -t $table -I PREROUTING 1 -j $CHAIN"
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

# Placeholder: rx_proxy connecting onward from the client's own address (IP_TRANSPARENT with
# TPROXY or policy routing of the replies) needs rules on the rx box. Not designed yet: until
# then the rx box needs no rules and this emits only a note.
rx_transparency_rules() {
  echo "# $1: rx box source transparency (TPROXY): not implemented yet; no rules"
}

rx_rules() {
  rx_transparency_rules "$1"
}

# --- command line ------------------------------------------------------------------------

CONFIG=''
ROLE=tx
FAMILY=all
REMOVE=0

need_value() {
  [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

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
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

check_role "$ROLE"
case $FAMILY in
  4) TOOLS=iptables ;;
  6) TOOLS=ip6tables ;;
  all) TOOLS='iptables ip6tables' ;;
  *) die "bad --family '$FAMILY': expected 4, 6 or all" ;;
esac
check_config

echo "#!/bin/sh"
if [ "$REMOVE" -eq 1 ]; then
  # Independent of role and config: removes whatever Tandem chains are installed.
  echo "# Tandem: remove our iptables chains and jumps (generated by iptables/rules.sh)"
  echo "set -eu"
  for tool in $TOOLS; do
    for table in mangle nat; do
      emit_remove "$tool" "$table"
    done
  done
  exit 0
fi

if [ "$ROLE" = tx ]; then
  # Defaults are those of src/common/config/schema.ts.
  BRIDGE=$(conf_get interception bridge br0)
  LAN_INTERFACE=$(conf_get interception lan_interface eth0)
  check_ifname interception.bridge "$BRIDGE"
  check_ifname interception.lan_interface "$LAN_INTERFACE"
  QUEUE_NUM=$(check_int interception.queue_num "$(conf_get interception queue_num 0)" 0 65535)
  MARK=$(check_int interception.mark "$(conf_get interception mark 1)" 1 2147483647)
  MARK_HEX=$(printf '0x%x' "$MARK")
  LOCAL_PORT=$(check_int tx_proxy.local_port "$(conf_get tx_proxy local_port 5000)" 1 65535)
  PORT_GROUPS=$(multiport_groups interception.ports "$(conf_get interception ports '')") || exit 1
  EXCLUDE_GROUPS=$(multiport_groups interception.exclude_ports \
    "$(conf_get interception exclude_ports 22)") || exit 1
  if [ "$(conf_get interception enabled false)" != true ]; then
    warn "note: [interception] enabled is not true: tx_proxy will not read the queue, SYNs bypass it"
  fi
fi

echo "# Tandem: $ROLE box rules from ${CONFIG:-built-in defaults} (generated by iptables/rules.sh)"
echo "set -eu"
for tool in $TOOLS; do
  if [ "$ROLE" = tx ]; then tx_rules "$tool"; else rx_rules "$tool"; fi
done
