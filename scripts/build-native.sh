#!/bin/sh
# Build native/build/Release/tandem_native.node (house style rule 10).
#
# Idempotent: installs the system packages the addon needs when they are missing (as root,
# through apt-get), then rebuilds with the project's own node-gyp. It does not rely on npm
# install scripts, so `npm ci --ignore-scripts` followed by this script is enough.
set -eu
# No options but --help; anything else is a usage error (exit 2, as in every script here).
if [ $# -gt 0 ]; then
  case $1 in
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-native: unknown argument $1 (it takes none; see --help)" >&2; exit 2 ;;
  esac
fi

cd "$(dirname "$0")/.."

NFQ_HEADER=/usr/include/libnetfilter_queue/libnetfilter_queue.h

missing=""
[ -f "$NFQ_HEADER" ] || missing="$missing libnetfilter-queue-dev"
command -v g++ >/dev/null 2>&1 || missing="$missing g++"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"

if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-native: missing system packages:$missing (run as root, or: sudo apt-get install -y$missing)" >&2
    exit 1
  fi
  echo "build-native: installing$missing" >&2
  apt-get update
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

NODE_GYP=node_modules/node-gyp/bin/node-gyp.js
if [ ! -f "$NODE_GYP" ]; then
  echo "build-native: $NODE_GYP not found: run npm ci first" >&2
  exit 1
fi

# Use the headers installed next to the running node when there are any (Debian/NodeSource
# packages and official tarballs ship them), so the build needs no download.
node_prefix=$(node -p "require('node:path').resolve(process.execPath, '..', '..')")
if [ -f "$node_prefix/include/node/node_api.h" ]; then
  set -- "--nodedir=$node_prefix"
else
  set --
fi

node "$NODE_GYP" rebuild --loglevel=warn --directory native "$@"
echo "build-native: built native/build/Release/tandem_native.node" >&2
# Tandem's congestion control for the subflows (BPF): not fatal when the machine cannot build
# it (no clang, bpftool or kernel BTF: exit 3; only trunk.congestion = tandem needs it); a failed
# compile is.
status=0
sh scripts/tandem-cc.sh build || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
