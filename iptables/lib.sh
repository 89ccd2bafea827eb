# shellcheck shell=sh
# Helpers shared by bridge-setup.sh, iptables/rules.sh and iptables/apply.sh: errors, the
# network.conf values (read by the proxies' own loader) and checks of command-line arguments.
# Sourced, not run; the caller sets PROG, HERE (its own directory) and `set -eu`.

# Prints "PROG: message" on stderr and exits 1.
die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 1
}

# Prints "PROG: message" on stderr and exits 2: the command line itself is wrong (an unknown
# option, a missing value). Every script exits 2 for these, as getopt-style tools do.
usage_die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 2
}

# Prints "PROG: message" on stderr (a note, not an error).
warn() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

# Prints "PROG: message" on stdout (what was done).
say() {
  printf '%s: %s\n' "$PROG" "$*"
}

is_root() {
  [ "$(id -u)" -eq 0 ]
}

# ensure_tool COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is missing and we are
# root (a fresh machine may lack it); returns 1 when COMMAND is still missing afterwards.
# TANDEM_NO_INSTALL=1 (set by the systemd units) never installs: nothing runs apt-get at boot.
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "${TANDEM_NO_INSTALL:-}" ] && is_root && command -v apt-get >/dev/null 2>&1; then
    warn "$1 not found: installing $2"
    # Quiet on success; apt-get's own messages go to stderr when it fails.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "$2"; } >/dev/null; then
      warn "apt-get install $2 failed"
    fi
  fi
  command -v "$1" >/dev/null 2>&1
}

# tandem_cli ARG...: runs tx_proxy, which lies beside these scripts in a checkout and in the
# package (TANDEM_CLI overrides).
tandem_cli() {
  for _cli in "${TANDEM_CLI:-}" "$HERE/tx_proxy" "$HERE/../tx_proxy"; do
    if [ -n "$_cli" ] && [ -x "$_cli" ]; then
      "$_cli" "$@"
      return
    fi
  done
  die "tx_proxy not found beside $PROG (set TANDEM_CLI to its path)"
}

# check_config: reads $CONFIG (no -c: the built-in defaults) with the proxies' own loader, once,
# into CONF_VALUES. The loader refuses what the proxies refuse (unknown keys, bad values) with
# one line naming the key, and prints every value in normal form (sizes and hex as decimals).
check_config() {
  if [ -n "${CONFIG:-}" ] && { [ ! -f "$CONFIG" ] || [ ! -r "$CONFIG" ]; }; then
    die "cannot read config file $CONFIG"
  fi
  CONF_VALUES=$(tandem_cli config list -c "${CONFIG:-/dev/null}") || exit 1
}

# conf_get SECTION KEY: the value check_config read (defaults included). A key the loader does
# not know is an error here too: add it to src/common/config/schema.ts.
conf_get() {
  case $CONF_VALUES in
    "$1.$2="* | *"
$1.$2="*) ;;
    *) die "$1.$2: not a configuration key (src/common/config/schema.ts)" ;;
  esac
  printf '%s\n' "$CONF_VALUES" | sed -n "s/^$1\.$2=//p"
}

# check_role ROLE: tx or rx.
check_role() {
  case $1 in
    tx | rx) ;;
    *) usage_die "bad role '$1': expected --role tx or --role rx" ;;
  esac
}

# check_ifname NAME VALUE: an interface name (1-15 of A-Z a-z 0-9 _ . -).
check_ifname() {
  case $2 in
    '' | *[!A-Za-z0-9_.-]*) die "$1: expected an interface name (1-15 of A-Z a-z 0-9 _ . -), got '$2'" ;;
  esac
  [ ${#2} -le 15 ] || die "$1: interface name '$2' is longer than 15 characters"
}

# check_address NAME VALUE: looks like address/prefix (the kernel checks the rest).
check_address() {
  case $2 in
    */*[!0-9]* | */ | /* | *[!0-9A-Fa-f.:/]*) die "$1: expected address/prefix like 192.168.2.201/24, got '$2'" ;;
    */*) ;;
    *) die "$1: expected address/prefix like 192.168.2.201/24, got '$2'" ;;
  esac
}

# need_value OPTION ARGC: the option at hand needs an argument after it.
need_value() {
  [ "$2" -ge 2 ] || usage_die "$1 needs a value (see --help)"
}

# conf_role_get ROLE KEY: [interception] ROLE_KEY when set and not empty, else KEY.
# Lets one network.conf name each box's interfaces (tx_lan_interface = enp1s0)
# while lan_interface stays the value both boxes share.
conf_role_get() {
  _own=$(conf_get interception "$1_$2" '')
  if [ -n "$_own" ]; then
    printf '%s\n' "$_own"
  else
    conf_get interception "$2"
  fi
}

# ipv6_disabled: true when this box (this network namespace) has IPv6 turned off, by
# net.ipv6.conf.all.disable_ipv6 = 1 or by booting with ipv6.disable=1 (no /proc/sys/net/ipv6).
ipv6_disabled() {
  [ -d /proc/sys/net/ipv6 ] || return 0
  [ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null)" = 1 ]
}
