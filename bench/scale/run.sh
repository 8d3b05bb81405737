#!/bin/sh
# Issue 7 scale simulation: HOSTS lightweight agents (default 10,000; each its own TLS
# connection, 500 per process) against 2 controller replicas (`weft up --store etcd://...`
# twice) on ETCD_MEMBERS real etcd members (default 1), on this machine. Agents alternate
# between the replicas and know both. Measures change latency to every concerned host,
# controller memory and CPU per host, the storm when one replica is killed (its agents fail
# over), and etcd's load. Needs Debian's etcd-server and ~20 GiB of RAM for 10,000 agents.
#   bench/scale/run.sh [HOSTS] [ETCD_MEMBERS]
set -eu
cd "$(dirname "$0")/../.."
HOSTS=${1:-10000}
MEMBERS=${2:-1}
command -v etcd >/dev/null || { echo "etcd not found: apt-get install -y etcd-server" >&2; exit 1; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p weft -p weft-bench --bin weft --bin southbound-scale
echo "== $HOSTS hosts, 2 replicas, $MEMBERS etcd member(s) (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
exec target/release/southbound-scale --hosts "$HOSTS" --replicas 2 --etcd "$MEMBERS" \
  --samples "${SAMPLES:-100}" --ports "${PORTS:-4}" --weft target/release/weft --storm kill-one
