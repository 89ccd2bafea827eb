#!/bin/sh
# Render Tandem's systemd units for this checkout and install them, with the service user.
#   deploy/install-units.sh [--prefix DIR] [--config FILE] [--dest DIR] [--no-reload] [--no-user]
#                           [--dry-run] [--uninstall]
# Defaults: prefix = this checkout, config = /etc/tandem/network.conf, dest = /etc/systemd/system.
# --dry-run prints what would be done and changes nothing; --uninstall stops and removes the
# units (the user stays, as Debian leaves system users). Then, to run:
#   systemctl enable --now tandem-tx-proxy (tx box) or tandem-rx-proxy (rx box).
set -eu
PROG=install-units.sh
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=iptables/lib.sh
. "$HERE/../iptables/lib.sh"
checkout=$(cd "$HERE/.." && pwd)
prefix=$checkout
config=/etc/tandem/network.conf
dest=/etc/systemd/system
reload=yes
user=yes
dry=no
action=install
SERVICE_USER=tandem

# A value given as an empty string is as missing as no value at all.
need_arg() {
  need_value "$1" "$2"
  [ -n "$3" ] || usage_die "$1 needs a value (see --help)"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) need_arg "$1" $# "${2-}"; prefix=$2; shift 2 ;;
    --config) need_arg "$1" $# "${2-}"; config=$2; shift 2 ;;
    --dest) need_arg "$1" $# "${2-}"; dest=$2; shift 2 ;;
    --no-reload) reload=no; shift ;;
    --no-user) user=no; shift ;;
    --dry-run|-n) dry=yes; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage_die "unknown argument $1 (see --help)" ;;
  esac
done

# run CMD...: run it, or print it under --dry-run.
run() {
  if [ "$dry" = yes ]; then echo "would run: $*"; else "$@"; fi
}
have_systemd() {
  command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
}
units() {
  for unit in "$checkout"/deploy/systemd/*.service; do basename "$unit"; done
}

# port_of VALUE: the port of a PORT or HOST:PORT value ('' when none).
port_of() {
  case "$1" in
    '') echo '' ;;
    *:*) echo "${1##*:}" ;;
    *) echo "$1" ;;
  esac
}

# low_port_dropin UNIT PORT...: a drop-in granting CAP_NET_BIND_SERVICE when a port is below 1024.
low_port_dropin() {
  unit=$1
  shift
  low=''
  for p in "$@"; do
    case "$p" in ''|*[!0-9]*) continue ;; esac
    [ "$p" -lt 1024 ] && low="$low $p"
  done
  dir="$dest/$unit.d"
  if [ -z "$low" ]; then
    if [ -f "$dir/50-low-port.conf" ]; then run rm -f "$dir/50-low-port.conf"; fi
    return 0
  fi
  if [ "$dry" = yes ]; then
    echo "would write $dir/50-low-port.conf (CAP_NET_BIND_SERVICE for port(s)$low)"
    return 0
  fi
  mkdir -p "$dir"
  cat > "$dir/50-low-port.conf" <<DROPIN
# Written by install-units.sh: the configuration uses port(s)$low, below 1024.
[Service]
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
DROPIN
  echo "installed $dir/50-low-port.conf (port(s)$low)"
}

if [ "$action" = uninstall ]; then
  if have_systemd; then
    for u in tandem-tx-proxy.service tandem-rx-proxy.service tandem-rules@tx.service \
      tandem-rules@rx.service tandem-bridge@tx.service tandem-bridge@rx.service \
      tandem-route-tuning@br0.service; do
      if systemctl is-enabled --quiet "$u" 2>/dev/null || systemctl is-active --quiet "$u" 2>/dev/null; then
        run systemctl disable --now "$u"
      fi
    done
  fi
  for u in $(units); do
    if [ -e "$dest/$u" ]; then run rm -f "$dest/$u"; echo "removed $dest/$u"; fi
    if [ -d "$dest/$u.d" ]; then run rm -f "$dest/$u.d/50-low-port.conf"; run rmdir "$dest/$u.d" 2>/dev/null || true; fi
  done
  if [ "$reload" = yes ] && have_systemd; then run systemctl daemon-reload; fi
  if getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    echo "the user $SERVICE_USER stays (userdel $SERVICE_USER removes it)"
  fi
  exit 0
fi

# The values the drop-ins and the key need, read by the proxies' own loader (lib.sh), before
# anything is installed: a configuration the proxies would refuse stops here, with their line.
# One not written yet leaves them out, as the proxies could not start with it either.
if [ -f "$config" ]; then
  CONFIG=$config
  check_config
  tx_ports="$(conf_get tx_proxy local_port) $(port_of "$(conf_get tx_proxy metrics_listen)")"
  rx_ports="$(conf_get rx_proxy recv_port) $(port_of "$(conf_get rx_proxy metrics_listen)")"
  psk=$(conf_get security psk_file)
else
  warn "$config does not exist yet: no low-port drop-ins, key left as it is; run this again once it does"
  tx_ports=''
  rx_ports=''
  psk=''
fi

# The service user: no login, no home, its own group.
if [ "$user" = yes ] && ! getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    run useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "Tandem proxy" "$SERVICE_USER"
  else
    run adduser --system --group --no-create-home --home /nonexistent "$SERVICE_USER"
  fi
fi

if [ "$dry" = no ]; then mkdir -p "$dest"; fi
for u in $(units); do
  if [ "$dry" = yes ]; then
    echo "would install $dest/$u"
  else
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@CONFIG@#$config#g" "$checkout/deploy/systemd/$u" > "$dest/$u"
    echo "installed $dest/$u"
  fi
done
# shellcheck disable=SC2086 # the ports are words
low_port_dropin tandem-tx-proxy.service $tx_ports
# shellcheck disable=SC2086 # the ports are words
low_port_dropin tandem-rx-proxy.service $rx_ports

# The pre-shared key must be readable by the service user alone (the proxies refuse a key file
# that group or others can read).
if [ "$user" = yes ] && [ -n "$psk" ] && [ -e "$psk" ]; then
  run chown "$SERVICE_USER:$SERVICE_USER" "$psk"
  run chmod 600 "$psk"
fi

if [ "$reload" = yes ] && have_systemd; then run systemctl daemon-reload; fi
