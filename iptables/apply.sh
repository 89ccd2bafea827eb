#!/bin/sh
# Applies (or removes) Tandem's iptables/ip6tables rules on this box: runs the script that
# iptables/rules.sh generates from network.conf. Idempotent. `iptables/apply.sh --help`.
set -eu

PROG=apply.sh
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=iptables/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<'USAGE'
Usage: iptables/apply.sh [-c network.conf] [--role tx|rx] [--family 4|6|all] [--dry-run] [--remove]

Installs this box's rules (see iptables/rules.sh --help for what they are) in chains of our
own, TANDEM_PRE in mangle and nat, jumped to from PREROUTING. Applying again replaces our
rules and leaves one copy; nothing outside our chains and jumps is touched.

All or nothing: when a command fails, apply.sh names it, removes what this run applied and
puts back the Tandem rules that were there before (chains, ip rule, table 7462, nft table),
then exits 1. With the default --family all, a box with IPv6 disabled
(net.ipv6.conf.all.disable_ipv6 = 1, or ipv6.disable=1 at boot) gets the IPv4 rules and a
note; --family 6 there is an error.

Options:
  -c, --config FILE   network.conf to read (default: the built-in defaults)
  --role tx|rx        which box (default tx)
  --family 4|6|all    iptables (4), ip6tables (6) or both (default all)
  --dry-run           print the exact commands instead of running them (no root needed)
  --remove            delete our chains and jumps (role and config do not matter)
  -h, --help          this text

Exit status: 0 applied, 1 failed (rolled back) or refused, 2 usage error.
USAGE
}

# snapshot: prints the commands that recreate the Tandem objects of this box as they are now
# (our chains and jumps of $tools, our ip rule and table 7462, the nft table bridge tandem).
# The numbers and names are rules.sh's fixed ones.
snapshot() {
  for tool in $tools; do
    for table in mangle nat; do
      if "$tool" -w -t "$table" -S TANDEM_PRE >/dev/null 2>&1; then
        echo "$tool -w -t $table -N TANDEM_PRE 2>/dev/null || $tool -w -t $table -F TANDEM_PRE"
        "$tool" -w -t "$table" -S TANDEM_PRE | sed -n "s/^-A /$tool -w -t $table -A /p"
        if "$tool" -w -t "$table" -C PREROUTING -j TANDEM_PRE 2>/dev/null; then
          echo "$tool -w -t $table -I PREROUTING 1 -j TANDEM_PRE"
        fi
      fi
    done
    if [ "$tool" = iptables ]; then ipf=-4; else ipf=-6; fi
    ip "$ipf" rule show pref 1000 2>/dev/null |
      sed -n "/lookup 7462/s/^1000:[[:space:]]*/ip $ipf rule add pref 1000 /p"
    ip "$ipf" route show table 7462 2>/dev/null | sed "s/^/ip $ipf route add /; s/\$/ table 7462/"
  done
  if command -v nft >/dev/null 2>&1 && nft list table bridge tandem >/dev/null 2>&1; then
    echo "nft -f - <<'NFT'"
    nft list table bridge tandem
    echo "NFT"
  fi
}
NFT_REMOVE='if command -v nft >/dev/null 2>&1 && nft list table bridge tandem >/dev/null 2>&1; then nft delete table bridge tandem; fi'

DRY_RUN=0
REMOVE=0
ROLE=tx
FAMILY=all
CONFIG=''

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
    --dry-run)
      DRY_RUN=1
      shift
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
  4 | 6 | all) ;;
  *) usage_die "bad --family '$FAMILY': expected 4, 6 or all" ;;
esac
check_config

# A family the box has turned off cannot take rules (the kernel refuses the IPv6 local route
# of the rx box: "IPv6 is disabled on nexthop device"): skip it rather than fail half-way.
# --remove keeps both, to clear whatever is left from before IPv6 was turned off.
if [ "$REMOVE" -eq 0 ] && ipv6_disabled; then
  case $FAMILY in
    all)
      warn "note: IPv6 is disabled on this box: applying the IPv4 rules only (--family 4)"
      FAMILY=4
      ;;
    6) die "IPv6 is disabled on this box (net.ipv6.conf.all.disable_ipv6 = 1): no IPv6 rules to apply" ;;
  esac
fi

set -- --role "$ROLE" --family "$FAMILY"
[ -z "$CONFIG" ] || set -- "$@" --config "$CONFIG"
[ "$REMOVE" -eq 0 ] || set -- "$@" --remove
# rules.sh checks the config and prints a one-line error itself when it is wrong.
script=$("$HERE/rules.sh" "$@") || exit $?

if [ "$DRY_RUN" -eq 1 ]; then
  printf '%s\n' "$script"
  exit 0
fi

is_root || die "must run as root (--dry-run only prints the commands)"
case $FAMILY in
  4) tools=iptables ;;
  6) tools=ip6tables ;;
  *) tools='iptables ip6tables' ;;
esac
for tool in $tools; do
  # Debian's iptables package ships both commands.
  ensure_tool "$tool" iptables || die "$tool not found and could not be installed: apt-get install iptables"
done

case $script in
  *'nft -f'*) ensure_tool nft nftables || die "nft not found and could not be installed: apt-get install nftables (needed by interception.transparent)" ;;
esac
if [ "$REMOVE" -eq 1 ]; then
  sh -c "$script" || die "removing failed (the command is named above); fix it and run apply.sh --remove again"
else
  before=$(snapshot)
  if ! sh -c "$script"; then
    # The failed command named itself (run, in the generated script). Undo this run: remove
    # our objects of these families, then restore the ones that were there before.
    undo=$("$HERE/rules.sh" --family "$FAMILY" --remove)
    if sh -c "$undo
$NFT_REMOVE
$before" >/dev/null 2>&1; then
      die "rolled back: the Tandem rules are as they were before this run"
    fi
    die "rolling back failed too: check iptables -t mangle -S TANDEM_PRE, ip rule, nft list tables and run apply.sh --remove"
  fi
fi
if [ "$REMOVE" -eq 1 ]; then
  say "removed Tandem chains and jumps ($tools)"
elif [ "$ROLE" = tx ]; then
  say "tx rules applied ($tools): mangle and nat chains TANDEM_PRE, jumped to from PREROUTING"
else
  say "rx rules applied ($tools): source transparency (mangle TANDEM_PRE socket mark, nft table bridge tandem, ip rule fwmark -> table 7462) when interception.transparent = true"
fi
