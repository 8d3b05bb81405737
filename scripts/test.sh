#!/usr/bin/env bash
# The whole Weft test suite: installs what the tests need, builds once,
# runs every test. Network tests build namespaces and need root.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -p weft-model   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the suite builds network namespaces and runs BGP daemons: run it as root (sudo $0)" >&2
  exit 1
fi

# Debian packages the tests use, installed only when missing.
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in iproute2 iputils-ping procps frr gobgpd etcd-server busybox udhcpc bind9-dnsutils iperf3 tcpdump ethtool; do
  have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start system daemons (frr, etcd) we don't use.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found: installing it"
  cargo install --locked cargo-nextest
fi

# Build once (tests and the binaries they start), then run everything.
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
