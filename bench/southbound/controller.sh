#!/bin/sh
# Issue 4 benchmark against the real controller: `weft up` on the embedded store, N
# lightweight agents (each its own TLS connection, enrolled with a join token made through
# the REST API), ports created through the REST API; change latency, controller memory per
# idle host, and a reconnect storm after the controller is killed and restarted.
#   bench/southbound/controller.sh [SIZES]        default 100,1000
# Knobs: SAMPLES (default 200), PORTS per host (default 4). Results: BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/../.."
SIZES=${1:-100,1000}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p weft -p weft-bench --bin weft --bin southbound-scale
for n in $(echo "$SIZES" | tr ',' ' '); do
  echo "== $n hosts (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
  target/release/southbound-scale --hosts "$n" --samples "${SAMPLES:-200}" \
    --ports "${PORTS:-4}" --weft target/release/weft --storm restart
done
