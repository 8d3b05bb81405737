#!/usr/bin/env bash
# Copied from the team's shared OVN baseline harness (shared/bench/ovn, 2026-11-22);
# kept here so the benchmark runs from a clean clone.
# OVN control-plane (ovn-northd) scale baseline.
#
# Starts private NB + SB ovsdb-servers and ovn-northd in a scratch dir,
# loads a synthetic topology into NB, and measures how long northd takes
# to translate it into SB logical flows, how many flows it produces, the
# memory of northd and the SB ovsdb-server, and the latency of a single
# incremental change.  Results go to stdout as key=value lines; progress
# goes to stderr.  All daemons are stopped (via their pid files) on exit.
#
# Usage: northd_scale.sh [S [P [R [K]]]]      (or set them as env vars)
#   S  logical switches                        (default 10)
#   P  VM ports per switch                     (default 10, max 240)
#   R  logical routers                         (default max(1, S/10))
#   K  switches attached to each router        (default min(10, S))
# Env knobs:
#   PAUSE_LOAD=1      keep northd paused while NB is loaded (default 1), so
#                     northd_initial_s is one clean full computation; with 0
#                     northd works concurrently with the load
#   NORTHD_THREADS=N  pass --n-threads=N to ovn-northd (default: unset = 1)
#   LOAD_MODE=db      how VM ports are loaded: db = generic create/add with
#                     @ids (fast), lsp = lsp-add/lsp-set-addresses/pg-add by
#                     name (ovn-nbctl client is O(ports) per command); same NB
#   CHUNK=2000        ovn-nbctl commands per invocation/transaction
#   PORT_SECURITY=1   also set port security on VM ports (default 0)
#   LFLOW_LIST=0      skip the (slow at scale) expanded `ovn-sbctl lflow-list` count
#   KEEP=1            keep the scratch dir (dbs, logs) instead of deleting it
#   OVNB_DIR=/path    use this (empty or new) dir instead of mktemp /tmp/ovnbench.XXXXXX
#   WAIT_TIMEOUT=900  seconds before ovn-nbctl --wait=sb gives up
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

S=${1:-${S:-10}}
P=${2:-${P:-10}}
def_r=$((S / 10)); ((def_r >= 1)) || def_r=1
def_k=$((S < 10 ? S : 10))
R=${3:-${R:-$def_r}}
K=${4:-${K:-$def_k}}
PAUSE_LOAD=${PAUSE_LOAD:-1}
LFLOW_LIST=${LFLOW_LIST:-1}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-900}
for v in S P R K; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((S >= 1)) || die "S must be >= 1"
((P >= 1 && P <= 240)) || die "P must be 1..240 (one /24 per switch)"
((K <= S)) || die "K ($K) must be <= S ($S)"
(((R * K + S - 1) / S <= 9)) || die "R*K/S too large: a switch would get more than 9 routers"

ovnb_require_tools
ovnb_init_dir
on_exit() { local rc=$?; ovnb_stop_all; exit "$rc"; }
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- helpers ---------------------------------------------------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# user+system CPU seconds of a pid
cpu_s() {
    local tck; tck=$(getconf CLK_TCK)
    # fields after the ")" of comm: state is $1, utime is $12, stime is $13
    sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$tck" '{printf "%.2f", ($12 + $13) / t}'
}
count_rows() { # $1 = sb|nb, $2 = table
    "ovn-${1}ctl" --bare --columns=_uuid list "$2" | grep -c . || true
}
kv() { printf '%s=%s\n' "$1" "$2"; }
# northd incremental-engine counters of node $1 since the last clear-stats,
# as "recompute/compute" (recompute = full rebuild of that node)
engine_stats() {
    northd_ctl inc-engine/show-stats 2>/dev/null | awk -v n="$1" '
        /^Node: / { cur = $2; next }
        cur == n && /recompute:/ { r = $NF }
        cur == n && /[^e]compute:/ { c = $NF }
        END { if (r == "") print "n/a"; else printf "%s/%s\n", r, c }'
}
engine_clear() { northd_ctl inc-engine/clear-stats >/dev/null 2>&1 || true; }

# -- start -----------------------------------------------------------------
NORTHD_PAUSED=$PAUSE_LOAD ovnb_start_all
NORTHD_PID=$(ovnb_pid northd)
SB_PID=$(ovnb_pid sb)
NB_PID=$(ovnb_pid nb)

# host-wide busy/total jiffies, to spot other load on the machine
host_jiffies() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
read -r host_busy0 host_total0 < <(host_jiffies)

kv date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kv host_loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)"
kv host_cpus "$(nproc)"
kv host_mem_gib "$(awk '/^MemTotal:/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
kv ovn_version "$(ovn-northd --version | awk 'NR==1 {print $NF}')"
kv ovs_version "$(ovsdb-server --version | awk 'NR==1 {print $NF}')"
kv northd_threads "${NORTHD_THREADS:-1}"
kv pause_during_load "$PAUSE_LOAD"
kv load_mode "${LOAD_MODE:-db}"
kv S "$S"; kv P "$P"; kv R "$R"; kv K "$K"
kv vm_ports $((S * P))

# -- load NB ----------------------------------------------------------------
log "loading NB: S=$S P=$P R=$R K=$K (northd paused=$PAUSE_LOAD)"
northd_cpu0=$(cpu_s "$NORTHD_PID")
t0=$(now)
ovnb_build_topology
t1=$(now)
kv nb_load_s "$(elapsed "$t0" "$t1")"
kv nb_load_nbctl_invocations "$NB_INVOCATIONS"

# -- initial northd computation --------------------------------------------
log "waiting for northd (--wait=sb sync)"
t2=$(now)
if [[ $PAUSE_LOAD == 1 ]]; then northd_ctl resume >/dev/null; fi
ovn-nbctl --timeout="$WAIT_TIMEOUT" --wait=sb sync
t3=$(now)
kv northd_initial_s "$(elapsed "$t2" "$t3")"
kv load_plus_northd_s "$(elapsed "$t0" "$t3")"
kv northd_cpu_initial_s "$(awk -v a="$northd_cpu0" -v b="$(cpu_s "$NORTHD_PID")" 'BEGIN {printf "%.2f", b - a}')"

# -- sizes --------------------------------------------------------------------
kv nb_logical_switch_ports "$(count_rows nb Logical_Switch_Port)"
kv nb_acls "$(count_rows nb ACL)"
kv sb_logical_flow_rows "$(count_rows sb Logical_Flow)"
kv sb_logical_dp_group_rows "$(count_rows sb Logical_DP_Group)"
kv sb_port_binding_rows "$(count_rows sb Port_Binding)"
kv sb_datapath_binding_rows "$(count_rows sb Datapath_Binding)"
kv sb_multicast_group_rows "$(count_rows sb Multicast_Group)"
kv sb_address_set_rows "$(count_rows sb Address_Set)"
if [[ $LFLOW_LIST == 1 ]]; then
    # lflow-list expands datapath groups: one line per (flow, datapath).
    tl0=$(now)
    kv sb_lflow_list_lines "$(ovn-sbctl lflow-list | grep -c 'table=' || true)"
    kv sb_lflow_list_s "$(elapsed "$tl0" "$(now)")"
fi

# -- memory after the initial computation --------------------------------
kv northd_rss_kb "$(rss_kb "$NORTHD_PID")"
kv northd_peak_rss_kb "$(hwm_kb "$NORTHD_PID")"
kv sb_ovsdb_rss_kb "$(rss_kb "$SB_PID")"
kv sb_ovsdb_peak_rss_kb "$(hwm_kb "$SB_PID")"
kv nb_ovsdb_rss_kb "$(rss_kb "$NB_PID")"
kv sb_db_file_bytes "$(stat -c %s "$OVNB_DIR/sb.db")"

# -- incremental changes ----------------------------------------------------
# (a) no-op: just bump nb_cfg and wait; the floor for any change.
engine_clear
ti=$(now)
ovn-nbctl --timeout="$WAIT_TIMEOUT" --wait=sb sync
kv incr_noop_sync_s "$(elapsed "$ti" "$(now)")"
kv incr_noop_lflow_engine_recompute_compute "$(engine_stats lflow)"

# (b) THE incremental change: one new VM port on ls1, in one transaction
#     that waits for northd to have updated SB.
sw_prefix pfx 1
lsp_mac mac 1 $((P + 1))
newip="$pfx.$((10 + P + 1))"
((10 + P + 1 <= 254)) || newip="$pfx.254"
fl0=$(count_rows sb Logical_Flow)
engine_clear
ti=$(now)
ovn-nbctl --timeout="$WAIT_TIMEOUT" --wait=sb \
    lsp-add ls1 ls1-pnew -- lsp-set-addresses ls1-pnew "$mac $newip"
kv incr_add_port_s "$(elapsed "$ti" "$(now)")"
kv incr_add_port_lflow_engine_recompute_compute "$(engine_stats lflow)"
kv incr_add_port_lflow_delta $(($(count_rows sb Logical_Flow) - fl0))

# (c) extra: put that port into pg_all (touches ACL/address-set processing).
newuuid=$(ovn-nbctl --bare --columns=_uuid find Logical_Switch_Port name=ls1-pnew)
engine_clear
ti=$(now)
ovn-nbctl --timeout="$WAIT_TIMEOUT" --wait=sb add Port_Group pg_all ports "$newuuid"
kv incr_add_port_to_pg_s "$(elapsed "$ti" "$(now)")"
kv incr_add_port_to_pg_lflow_engine_recompute_compute "$(engine_stats lflow)"

kv northd_rss_end_kb "$(rss_kb "$NORTHD_PID")"
kv northd_peak_rss_end_kb "$(hwm_kb "$NORTHD_PID")"
kv sb_ovsdb_peak_rss_end_kb "$(hwm_kb "$SB_PID")"
kv northd_cpu_total_s "$(cpu_s "$NORTHD_PID")"
kv sb_ovsdb_cpu_total_s "$(cpu_s "$SB_PID")"

# northd's own per-phase stopwatches (ms), e.g. ovnnb_db_run / build_lflows
if sw=$(northd_ctl stopwatch/show 2>/dev/null); then
    printf '%s\n' "$sw" | awk '
        /^Statistics for / { name = $3; gsub(/[^A-Za-z0-9_]/, "", name)
                             keep = (name ~ /^(ovnnb_db_run|build_lflows|lflows_to_sb|ovnnorthdloop)$/); next }
        keep && /Total samples:/ { printf "northd_sw_%s_samples=%s\n", name, $3 }
        keep && /Maximum:/       { printf "northd_sw_%s_max_ms=%s\n", name, $2 }'
fi

read -r host_busy1 host_total1 < <(host_jiffies)
# share of all host CPU time that was busy during the run (all processes,
# this benchmark included); high values with low northd/sb CPU = other load
kv host_cpu_busy_pct "$(awk -v b=$((host_busy1 - host_busy0)) -v t=$((host_total1 - host_total0)) 'BEGIN {printf "%.0f", t ? 100 * b / t : 0}')"
kv host_loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)"
log "done"
