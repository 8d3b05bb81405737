#!/usr/bin/env bash
# Issue 3 benchmark: the same topology compiled by ovn-northd (OVN 23.03 from
# Debian) and by Weft, in the same run, side by side.
#
#   bench/compile/run.sh [S P]        default 200 100 (20,000 ports)
#
# Topology (bench/ovn/lib.sh): S switches x P ports, S/10 routers of 10
# switches each, one port group / security group on every port allowing
# egress and ingress from the same group, stateful.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${1:-200}
P=${2:-100}

if ! command -v ovn-northd >/dev/null; then
  echo "installing ovn-central (Debian) for the baseline" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq && apt-get install -y -qq ovn-central >/dev/null
fi
cargo build --release -q -p weft-bench --bin compile

out=$(mktemp -d)
echo "== ovn-northd S=$S P=$P (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
LFLOW_LIST=0 bench/ovn/northd_scale.sh "$S" "$P" > "$out/ovn.txt"
echo "== weft S=$S P=$P (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
target/release/compile "$S" "$P" > "$out/weft.txt"

val() { grep "^$2=" "$out/$1.txt" | head -1 | cut -d= -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
o_full=$(val ovn northd_initial_s); w_full=$(val weft weft_full_compile_s)
o_add=$(val ovn incr_add_port_s); w_add=$(awk -v m="$(val weft weft_incr_add_port_ms)" 'BEGIN {printf "%.5f", m/1000}')
o_pg=$(val ovn incr_add_port_to_pg_s); w_pg=$(awk -v m="$(val weft weft_incr_add_port_to_group_ms)" 'BEGIN {printf "%.5f", m/1000}')
o_rss=$(val ovn northd_peak_rss_kb); w_rss=$(val weft weft_rss_kb)
echo
echo "| S=$S P=$P ($(date -u +%F)) | ovn-northd 23.03 | weft | ovn / weft |"
echo "|---|---|---|---|"
echo "| full compile (s) | $o_full | $w_full | $(ratio "$o_full" "$w_full") |"
echo "| one added port (s) | $o_add | $w_add | $(ratio "$o_add" "$w_add") |"
echo "| port added to group (s) | $o_pg | $w_pg | $(ratio "$o_pg" "$w_pg") |"
echo "| flows | $(val ovn sb_logical_flow_rows) logical flows | $(val weft weft_flows) flows | |"
echo "| memory (peak RSS, KiB) | $o_rss (northd) + $(val ovn sb_ovsdb_peak_rss_kb) (SB) | $w_rss (whole process: intent + compiler) | $(ratio "$o_rss" "$w_rss") |"
echo
echo "raw: $out/ovn.txt $out/weft.txt"
