#!/bin/sh
# Render Tandem's systemd units for this checkout and install them.
#   deploy/install-units.sh [--prefix DIR] [--config FILE] [--dest DIR] [--no-reload]
# Defaults: prefix = this checkout, config = /etc/tandem/network.conf, dest = /etc/systemd/system.
# Then: systemctl enable --now tandem-tx-proxy (tx box) or tandem-rx-proxy (rx box).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=$here
config=/etc/tandem/network.conf
dest=/etc/systemd/system
reload=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --dest) dest=$2; shift 2 ;;
    --no-reload) reload=no; shift ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-units.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$dest"
for unit in "$here"/deploy/systemd/*.service; do
  sed -e "s#@PREFIX@#$prefix#g" -e "s#@CONFIG@#$config#g" "$unit" > "$dest/$(basename "$unit")"
  echo "installed $dest/$(basename "$unit")"
done
if [ "$reload" = yes ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
