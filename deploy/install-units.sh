#!/bin/sh
# Render Tandem's systemd units for this checkout and install them, with the service user.
#   deploy/install-units.sh [--prefix DIR] [--config FILE] [--dest DIR] [--no-reload] [--no-user]
#                           [--dry-run] [--uninstall]
# Defaults: prefix = this checkout, config = /etc/tandem/network.conf, dest = /etc/systemd/system.
# --dry-run prints what would be done and changes nothing; --uninstall stops and removes the
# units (the user stays, as Debian leaves system users). Then, to run:
#   systemctl enable --now tandem-tx-proxy (tx box) or tandem-rx-proxy (rx box).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=$here
config=/etc/tandem/network.conf
dest=/etc/systemd/system
reload=yes
user=yes
dry=no
action=install
SERVICE_USER=tandem

usage_error() {
  echo "install-units.sh: $1 (see --help)" >&2
  exit 2
}
need_value() {
  [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a value"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) need_value "$@"; prefix=$2; shift 2 ;;
    --config) need_value "$@"; config=$2; shift 2 ;;
    --dest) need_value "$@"; dest=$2; shift 2 ;;
    --no-reload) reload=no; shift ;;
    --no-user) user=no; shift ;;
    --dry-run|-n) dry=yes; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage_error "unknown argument $1" ;;
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
  for unit in "$here"/deploy/systemd/*.service; do basename "$unit"; done
}

# ini_get SECTION KEY: the value of KEY in [SECTION] of the config (last one wins), or nothing.
ini_get() {
  [ -r "$config" ] || return 0
  awk -v s="$1" -v k="$2" '
    /^[ \t]*[;#]/ { next }
    /^[ \t]*\[/ { sec = $0; gsub(/[][ \t]/, "", sec); next }
    sec == s {
      n = index($0, "="); if (n == 0) next
      key = substr($0, 1, n - 1); gsub(/[ \t]/, "", key)
      if (key != k) next
      v = substr($0, n + 1); sub(/[ \t]*[;#].*$/, "", v); gsub(/^[ \t]+|[ \t]+$/, "", v)
      gsub(/^"|"$/, "", v); val = v
    }
    END { if (val != "") print val }' "$config"
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
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@CONFIG@#$config#g" "$here/deploy/systemd/$u" > "$dest/$u"
    echo "installed $dest/$u"
  fi
done
low_port_dropin tandem-tx-proxy.service "$(ini_get tx_proxy local_port)" \
  "$(port_of "$(ini_get tx_proxy metrics_listen)")"
low_port_dropin tandem-rx-proxy.service "$(ini_get rx_proxy recv_port)" \
  "$(port_of "$(ini_get rx_proxy metrics_listen)")"

# The pre-shared key must be readable by the service user alone (the proxies refuse a key file
# that group or others can read).
psk=$(ini_get security psk_file)
if [ "$user" = yes ] && [ -n "$psk" ] && [ -e "$psk" ]; then
  run chown "$SERVICE_USER:$SERVICE_USER" "$psk"
  run chmod 600 "$psk"
fi

if [ "$reload" = yes ] && have_systemd; then run systemctl daemon-reload; fi
