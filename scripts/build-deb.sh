#!/bin/sh
# Builds the Debian package of Tandem from this checkout (`make deb`): the compiled JavaScript,
# the prebuilt native addon, the production node_modules, a Node binary, the set-up scripts,
# the systemd units, the sysctl.d and modules-load.d files and /etc/tandem/network.conf
# (conffiles). Needs a built checkout (npm run build, npm run build:native) and no network:
# the production node_modules come from npm's cache (`npm ci --omit=dev --offline`).
# Usage: scripts/build-deb.sh [--out DIR] [--node PATH] [--fast]
#   --out DIR    where the .deb goes (default: dist/deb)
#   --node PATH  the Node (>= 20) to carry (default: the node on PATH)
#   --fast       no compression (for tests: the same files, built in seconds)
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
out=$here/dist/deb
node_bin=$(command -v node || true)
# xz at level 1: within a tenth of the default's size, several times faster.
compress='-Zxz -z1'
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --out)
      [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a value" >&2; exit 2; }
      out=$2
      shift 2
      ;;
    --node)
      [ $# -ge 2 ] || { echo "build-deb.sh: --node needs a value" >&2; exit 2; }
      node_bin=$2
      shift 2
      ;;
    --fast)
      compress='-Znone'
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "build-deb.sh: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
done
die() {
  echo "build-deb.sh: $*" >&2
  exit 1
}

cd "$here"
addon=native/build/Release/tandem_native.node
[ -f "$addon" ] || die "$addon not built: run npm run build:native (or make setup)"
[ -f dist/src/tx-proxy/main.js ] || die "not built: run npm run build"
[ -n "$node_bin" ] && [ -x "$node_bin" ] || die "no node found: give --node PATH"
node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "$node_bin is Node $node_major; the package carries Node >= 20"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: apt-get install dpkg"

version=$(node -p 'require("./package.json").version')-1
arch=$(dpkg --print-architecture)
stage=$(mktemp -d "${TMPDIR:-/tmp}/tandem-deb-XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
root=$stage/root
lib=$root/usr/lib/tandem

# The program, laid out like the checkout so every relative path in it holds.
mkdir -p "$lib/native/build/Release" "$lib/iptables" "$lib/scripts" "$lib/dist" "$lib/node/bin"
cp package.json package-lock.json "$lib/"
cp -R dist/src dist/native "$lib/dist/"
# The test bed, the benchmark and the traffic tools stay in the checkout.
rm -rf "$lib/dist/src/tools"
find "$lib/dist" \( -name '*.map' -o -name '*.d.ts' \) -exec rm -f {} +
cp "$addon" "$lib/native/build/Release/"
# Tandem's congestion control (scripts/tandem-cc.sh), where this machine could build it.
if [ -f native/build/bpf/tandem_cc.bpf.o ]; then
  mkdir -p "$lib/native/build/bpf"
  cp native/build/bpf/tandem_cc.bpf.o "$lib/native/build/bpf/"
fi
cp tx_proxy rx_proxy bridge-setup.sh "$lib/"
cp iptables/*.sh "$lib/iptables/"
cp scripts/tune-box.sh scripts/tandem-cc.sh "$lib/scripts/"
for hook in scripts/tune-hook.sh scripts/tune-persist.sh; do
  [ ! -f "$hook" ] || cp "$hook" "$lib/scripts/"
done
chmod 0755 "$lib/tx_proxy" "$lib/rx_proxy" "$lib/bridge-setup.sh" "$lib"/iptables/*.sh "$lib"/scripts/*.sh

# Production dependencies only, from npm's cache: no registry, no compiler.
(cd "$lib" && npm ci --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
  || die "npm ci --omit=dev --offline failed: run npm ci once with network access to fill the cache"
rm -f "$lib/package-lock.json"

# Node, stripped of debug symbols (they are most of its size).
cp "$node_bin" "$lib/node/bin/node"
strip --strip-debug "$lib/node/bin/node" 2>/dev/null || true
for license in /usr/share/doc/nodejs/copyright /usr/share/doc/nodejs/LICENSE; do
  if [ -f "$license" ]; then
    cp "$license" "$lib/node/LICENSE"
    break
  fi
done

# Commands on the PATH (relative links, so the tree also works unpacked elsewhere).
mkdir -p "$root/usr/bin"
ln -s ../lib/tandem/tx_proxy "$root/usr/bin/tandem-tx-proxy"
ln -s ../lib/tandem/rx_proxy "$root/usr/bin/tandem-rx-proxy"

# The configuration (a conffile: an upgrade never overwrites the operator's edits).
mkdir -p "$root/etc/tandem"
cp network.conf "$root/etc/tandem/network.conf"

# systemd units, rendered for the installed paths.
units=$root/lib/systemd/system
mkdir -p "$units"
for unit in deploy/systemd/*; do
  [ -f "$unit" ] || continue
  sed -e 's#@PREFIX@#/usr/lib/tandem#g' -e 's#@CONFIG@#/etc/tandem/network.conf#g' \
    "$unit" >"$units/$(basename "$unit")"
done

# The tuning that survives a reboot: the sysctl.d file tune-box.sh writes, made by tune-box.sh
# itself into the package's root (tandem-route-tuning@.service re-applies the route part).
if grep -q -- '--root' scripts/tune-box.sh; then
  sh scripts/tune-box.sh --root "$root" >/dev/null
else
  mkdir -p "$root/etc/sysctl.d"
  printf '%s\n' 'net.ipv4.tcp_slow_start_after_idle = 0' 'net.ipv4.tcp_rmem = 4096 1048576 67108864' \
    'net.ipv4.tcp_wmem = 4096 65536 67108864' >"$root/etc/sysctl.d/90-tandem.conf"
fi
sysctl_file=$(cd "$root" && ls etc/sysctl.d/*.conf)

# Documentation.
doc=$root/usr/share/doc/tandem
mkdir -p "$doc"
cp README.md "$doc/"
cp docs/*.md "$doc/"
cat >"$doc/copyright" <<'COPYRIGHT'
Tandem: a pair performance-enhancing proxy for TCP. License: MIT.
The Node.js runtime in /usr/lib/tandem/node is under the MIT license (see its LICENSE file);
the packages in /usr/lib/tandem/node_modules carry their own licenses.
COPYRIGHT

# Control files.
mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: tandem
Version: $version
Architecture: $arch
Maintainer: Tandem maintainers <tandem@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, libnetfilter-queue1, iptables, iproute2, nftables, procps, kmod, passwd
Section: net
Priority: optional
Homepage: https://localhost/tandem
Description: pair performance-enhancing proxy for TCP over long, lossy links
 Tandem puts a box at each end of a bad link (satellite, long-haul radio,
 cellular backhaul). The box on the sending side ends the client's TCP locally
 and carries the byte stream over several TCP connections to the other box,
 which writes it to the real destination. The boxes bridge their two ports and
 intercept flows with iptables; nothing on the hosts changes.
 .
 The package carries its own Node.js runtime; it needs no compiler and no npm.
CONTROL
(cd "$root" && find etc -type f | sed 's#^#/#' | sort) >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  chmod 0755 /etc/tandem
  # The proxies' units run as this user when they say so (User=tandem).
  if grep -qs '^User=tandem' /lib/systemd/system/tandem-*.service && ! getent passwd tandem >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tandem
  fi
  # The tuning now, not only at the next boot: the sysctls, and tcp_bbr for the subflows
  # (trunk.congestion = auto; etc/modules-load.d/tandem.conf loads it at every boot).
  if ! grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null; then
    modprobe -q tcp_bbr 2>/dev/null || true
  fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl restart systemd-sysctl.service >/dev/null 2>&1 || true
  elif command -v sysctl >/dev/null 2>&1; then
    sysctl -q -p /@SYSCTL_FILE@ >/dev/null 2>&1 || true
  fi
  # An older build of Tandem's congestion control stays registered until reboot: replace it
  # with this one (new subflows take it; the proxies run this package's code once restarted).
  if grep -qw tandem /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null &&
    [ -f /usr/lib/tandem/native/build/bpf/tandem_cc.bpf.o ]; then
    sh /usr/lib/tandem/scripts/tandem-cc.sh register >/dev/null 2>&1 || true
  fi
fi
exit 0
POSTINST
cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl stop tandem-tx-proxy.service tandem-rx-proxy.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
POSTRM
sed -i "s#@SYSCTL_FILE@#$sysctl_file#" "$root/DEBIAN/postinst"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/tandem_${version}_$arch.deb
# shellcheck disable=SC2086 # the options are words
dpkg-deb --root-owner-group $compress --build "$root" "$deb" >/dev/null
echo "build-deb.sh: $deb ($(du -h "$deb" | cut -f1), installed $(du -sh "$root" | cut -f1))"
