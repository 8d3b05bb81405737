#!/bin/sh
# Southbound benchmark: one command. Sizes and view size can be changed:
#   WEFT_BENCH_AGENTS=100,1000 WEFT_BENCH_RECORDS=20 bench/southbound/run.sh
# Needs about 2,100 file descriptors for 1,000 agents.
set -eu
cd "$(dirname "$0")/../.."
ulimit -n 20000 2>/dev/null || true
exec cargo bench -p weft-agent --bench southbound "$@"
