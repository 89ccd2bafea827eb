# shellcheck shell=sh
# Helpers shared by bridge-setup.sh, iptables/rules.sh and iptables/apply.sh: errors, the
# network.conf reader and value checks. Sourced, not run; the caller sets PROG and `set -eu`.
#
# The checks mirror src/common/config/schema.ts and config.ts so the scripts reject what
# tx_proxy would reject, with the same key names, without needing node or a build.

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
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if is_root && command -v apt-get >/dev/null 2>&1; then
    warn "$1 not found: installing $2"
    # Quiet on success; apt-get's own messages go to stderr when it fails.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "$2"; } >/dev/null; then
      warn "apt-get install $2 failed"
    fi
  fi
  command -v "$1" >/dev/null 2>&1
}

# ini_get FILE SECTION KEY: prints the value of KEY in [SECTION]; returns 1 when absent.
# Reads like the `ini` package tx_proxy uses: lines starting with ; or # are comments, an
# unquoted value ends at ; or #, quotes around a value are removed, the last duplicate wins.
ini_get() {
  awk -v want_section="$2" -v want_key="$3" '
    function trim(s) {
      sub(/^[ \t\r]+/, "", s)
      sub(/[ \t\r]+$/, "", s)
      return s
    }
    /^[ \t]*[;#]/ { next }
    /^[ \t]*\[/ {
      s = $0
      sub(/^[ \t]*\[/, "", s)
      sub(/\][ \t\r]*$/, "", s)
      section = trim(s)
      next
    }
    {
      eq = index($0, "=")
      if (eq == 0 || section != want_section || trim(substr($0, 1, eq - 1)) != want_key) next
      v = trim(substr($0, eq + 1))
      if (v ~ /^".*"$/ || v ~ /^\047.*\047$/) {
        v = substr(v, 2, length(v) - 2)
      } else {
        sub(/[;#].*$/, "", v)
        v = trim(v)
      }
      found = 1
      value = v
    }
    END {
      if (found) print value
      exit !found
    }' "$1"
}

# conf_get SECTION KEY DEFAULT: the value from $CONFIG (when set), else DEFAULT.
conf_get() {
  if [ -n "${CONFIG:-}" ] && ini_get "$CONFIG" "$1" "$2"; then
    return 0
  fi
  printf '%s\n' "$3"
}

# check_config: the config file named by $CONFIG (when set) is readable.
check_config() {
  [ -z "${CONFIG:-}" ] && return 0
  if [ ! -f "$CONFIG" ] || [ ! -r "$CONFIG" ]; then
    die "cannot read config file $CONFIG"
  fi
}

# check_role ROLE: tx or rx.
check_role() {
  case $1 in
    tx | rx) ;;
    *) usage_die "bad role '$1': expected --role tx or --role rx" ;;
  esac
}

# check_int NAME VALUE MIN MAX: prints VALUE as a decimal integer (0x hex and _ separators
# accepted, as in network.conf), or dies naming the key.
check_int() {
  _v=$(printf '%s' "$2" | tr -d '_')
  case $_v in
    0x* | 0X*)
      case ${_v#0[xX]} in
        '' | *[!0-9a-fA-F]*) _v=bad ;;
      esac
      ;;
    '' | *[!0-9]*) _v=bad ;;
  esac
  if [ "$_v" != bad ] && [ ${#_v} -le 12 ]; then
    _n=$(printf '%d' "$_v")
    if [ "$_n" -ge "$3" ] && [ "$_n" -le "$4" ]; then
      printf '%s\n' "$_n"
      return 0
    fi
  fi
  die "$1: expected an integer from $3 to $4, got '$2'"
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

# conf_role_get ROLE KEY DEFAULT: [interception] ROLE_KEY when set and not empty, else KEY,
# else DEFAULT. Lets one network.conf name each box's interfaces (tx_lan_interface = enp1s0)
# while lan_interface stays the value both boxes share.
conf_role_get() {
  _own=$(conf_get interception "$1_$2" '')
  if [ -n "$_own" ]; then
    printf '%s\n' "$_own"
  else
    conf_get interception "$2" "$3"
  fi
}

# ipv6_disabled: true when this box (this network namespace) has IPv6 turned off, by
# net.ipv6.conf.all.disable_ipv6 = 1 or by booting with ipv6.disable=1 (no /proc/sys/net/ipv6).
ipv6_disabled() {
  [ -d /proc/sys/net/ipv6 ] || return 0
  [ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null)" = 1 ]
}
