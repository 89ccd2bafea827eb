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

Options:
  -c, --config FILE   network.conf to read (default: the built-in defaults)
  --role tx|rx        which box (default tx)
  --family 4|6|all    iptables (4), ip6tables (6) or both (default all)
  --dry-run           print the exact commands instead of running them (no root needed)
  --remove            delete our chains and jumps (role and config do not matter)
  -h, --help          this text
USAGE
}

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
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
check_role "$ROLE"
check_config

set -- --role "$ROLE" --family "$FAMILY"
[ -z "$CONFIG" ] || set -- "$@" --config "$CONFIG"
[ "$REMOVE" -eq 0 ] || set -- "$@" --remove
# rules.sh checks the config and prints a one-line error itself when it is wrong.
script=$("$HERE/rules.sh" "$@") || exit 1

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
sh -c "$script" || die "an iptables command failed (see above); fix it and run apply.sh again"
if [ "$REMOVE" -eq 1 ]; then
  say "removed Tandem chains and jumps ($tools)"
elif [ "$ROLE" = tx ]; then
  say "tx rules applied ($tools): mangle and nat chains TANDEM_PRE, jumped to from PREROUTING"
else
  say "rx rules applied ($tools): source transparency (mangle TANDEM_PRE socket mark, nft table bridge tandem, ip rule fwmark -> table 7462) when interception.transparent = true"
fi
