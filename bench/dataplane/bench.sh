#!/usr/bin/env bash
# Copied from the team's baseline harness (/work/shared/bench/dataplane/bench.sh, 2026-11-22) so the
# repo does not depend on it at run time. Local changes: forwarder logs (dp-*.log, with weft-fwd's
# counters) are saved per variant. Use ./run.sh for the one-command kernel/OVS/weft comparison.
#
# bench.sh - dataplane baseline: ping latency, iperf3 TCP (1 and N streams), iperf3 UDP small-packet pps
# between vmA (10.0.0.1) and vmB (10.0.0.2) across a VXLAN overlay built by topo.sh.
#
# Usage: bench.sh [VARIANT ...]        (default: kernel ovs-userspace)
#   Several variants are run one after another in the same invocation and summarised side by side.
#   Every variant's topology is torn down afterwards (also on error / Ctrl-C).
#
# Output: key=value lines "<variant>.<metric>=<value>" on stdout (also in $OUT_DIR/results.env),
#         raw ping/iperf3 JSON and OVS logs under $OUT_DIR.
#
# Environment (defaults):
#   DURATION=10  PING_COUNT=100  PING_INTERVAL=0.01  PARALLEL=4  UDP_LEN=64  UDP_BW=0 (0 = unlimited)
#   REPEAT=1     (each test is repeated; the reported value is the median, *_all lists all runs)
#   SETTLE=1     (seconds of pause between tests)
#   IDLE_WAIT_S=0 IDLE_MAX_PCT=25  (wait up to IDLE_WAIT_S for other load on the box to drop below
#                                   IDLE_MAX_PCT % CPU before each variant and each test; the background
#                                   before a variant is reported, and during each test *_foreign_cpu_pct
#                                   estimates the CPU other jobs on the box took, in % of all cores)
#   BENCH_NICE=-10 (bench.sh renices itself and its scheduler autogroup; every process it starts - OVS
#                   daemons, iperf3, ping, plug-in forwarders - inherits it or gets the same autogroup
#                   nice, so other jobs on a shared box disturb less; 0 = off)
#   OUT_DIR=<script dir>/results/<timestamp>
#   topo.sh variables (NS_*, *_IP_*, VNI, VXLAN_PORT, VM_MTU, STATE_DIR, OVS_VM_PORT, ...) pass through.
#
# Traffic only ever flows between the namespaces created by topo.sh (TEST-NET / 10.x addresses).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOPO="$HERE/topo.sh"

: "${DURATION:=10}" "${PING_COUNT:=100}" "${PING_INTERVAL:=0.01}" "${PARALLEL:=4}"
: "${UDP_LEN:=64}" "${UDP_BW:=0}" "${REPEAT:=1}" "${SETTLE:=1}"
: "${IDLE_WAIT_S:=0}" "${IDLE_MAX_PCT:=25}" "${BENCH_NICE:=-10}"
: "${NS_HA:=hA}" "${NS_HB:=hB}" "${NS_VMA:=vmA}" "${NS_VMB:=vmB}"
: "${VM_IP_A:=10.0.0.1}" "${VM_IP_B:=10.0.0.2}" "${UL_IF:=ul0}" "${VXLAN_PORT:=4789}"
: "${STATE_DIR:=/run/dpbench}"
: "${OUT_DIR:=$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"
export STATE_DIR NS_HA NS_HB NS_VMA NS_VMB VM_IP_A VM_IP_B UL_IF VXLAN_PORT

PIDDIR="$STATE_DIR/pids"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

exec 3>&2   # original stderr: traps can fire while fds 1/2 are redirected into a result file
log() { printf '[bench] %s\n' "$*" >&3; }
die() { printf '[bench] ERROR: %s\n' "$*" >&3; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for c in ip iperf3 ping jq awk tcpdump timeout; do command -v "$c" >/dev/null || die "missing $c"; done
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"

if [[ "$BENCH_NICE" != 0 ]]; then
  renice -n "$BENCH_NICE" -p $$ >/dev/null || die "renice $BENCH_NICE failed"
  # with CONFIG_SCHED_AUTOGROUP, nice only matters inside a session: also boost our autogroup, and
  # (via topo.sh 'track') the autogroups of the daemons we start (OVS, iperf3 -D setsid())
  if [[ -w /proc/$$/autogroup ]]; then echo "$BENCH_NICE" >"/proc/$$/autogroup" 2>/dev/null || true; fi
  export AUTOGROUP_NICE="$BENCH_NICE"
fi

VARIANTS=("$@"); [[ ${#VARIANTS[@]} -gt 0 ]] || VARIANTS=(kernel ovs-userspace)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)   # absolute: iperf3 -D chdirs to /
RESULTS="$OUT_DIR/results.env"; : >"$RESULTS"

CURRENT=""
cleanup() {
  local rc=$?
  if [[ -n "$CURRENT" ]]; then
    log "tearing down $CURRENT"
    save_logs "$CURRENT" || true
    "$TOPO" down >&3 2>&3 || log "WARNING: teardown reported an error"
    CURRENT=""
  fi
  exit "$rc"
}
trap cleanup EXIT
# a signal is acted on when the current foreground step (at most one test, DURATION s) returns;
# Ctrl-C in a terminal also stops that step at once
trap 'exit 130' INT TERM HUP

emit() { # emit VARIANT KEY VALUE
  printf '%s.%s=%s\n' "$1" "$2" "$3" | tee -a "$RESULTS"
}

save_logs() {
  local v=$1 d
  for d in "$STATE_DIR"/ovs-*; do
    [[ -d "$d" ]] || continue
    mkdir -p "$OUT_DIR/$v/$(basename "$d")"
    cp "$d"/*.log "$OUT_DIR/$v/$(basename "$d")/" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------- CPU accounting
cpu_snap() { # -> "busy softirq total" jiffies, all CPUs
  awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, $8, t}' /proc/stat
}
dp_jiffies() { # utime+stime of tracked dataplane processes (pid files dp-*.pid: "PID STARTTIME"), all threads
  local f pid st sum=0 v
  for f in "$PIDDIR"/dp-*.pid; do
    [[ -e "$f" ]] || continue
    read -r pid st _ <"$f" || continue
    v=$(awk -v st="$st" '{sub(/^.*\) /,""); if ($20==st) print $12+$13; else print 0}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# CPU used by *other* jobs on the box during a test: utime+stime+cutime+cstime of user processes in the
# root network namespace that are not descendants of this script. Everything the benchmark runs
# (iperf3, ping, OVS, forwarders) lives in the test namespaces. An estimate: processes that start
# and exit inside the window and are reaped by a process that also exits there are missed.
ROOT_NETNS=$(readlink /proc/self/ns/net)   # the namespace bench.sh runs in (the "real" box)
foreign_snap() { # -> lines "pid:starttime ticks" for foreign user processes
  { find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l %h\n' 2>/dev/null \
      | awk -v ns="$ROOT_NETNS" '$1==ns {sub(/\/ns$/,"/stat",$2); print $2}' \
      | xargs -r cat 2>/dev/null || true; } \
  | awk -v me=$$ '
    { p=$1; sub(/^.*\) /,""); pp[p]=$2; fl[p]=$7; st[p]=$20; t[p]=$12+$13+$14+$15 }
    END {
      for (p in t) {
        if (int(fl[p]/2097152)%2) continue          # PF_KTHREAD
        q=p; mine=0; n=0
        while (q in pp && n<64) { if (q==me) { mine=1; break } q=pp[q]; n++ }
        if (!mine) print p ":" st[p], t[p]
      }
    }'
}
foreign_delta() { # FILE0 FILE1 -> jiffies used in between by processes alive at the end (incl. reaped children)
  awk 'NR==FNR { a[$1]=$2; next } { d=$2-(($1 in a)?a[$1]:0); if (d>0) s+=d } END { print s+0 }' "$1" "$2"
}
MEAS_T0=0; MEAS_CPU0=""; MEAS_DP0=0; FG0="$STATE_DIR/bench-foreign.0"; FG1="$STATE_DIR/bench-foreign.1"
meas_start() { mkdir -p "$STATE_DIR"; foreign_snap >"$FG0"; MEAS_T0=$(date +%s.%N); MEAS_CPU0=$(cpu_snap); MEAS_DP0=$(dp_jiffies); }
meas_stop() { # -> "busy_pct softirq_pct dp_pct foreign_pct"
  local t1 cpu1 dp1 fg1
  t1=$(date +%s.%N); cpu1=$(cpu_snap); dp1=$(dp_jiffies); foreign_snap >"$FG1"; fg1=$(foreign_delta "$FG0" "$FG1")
  awk -v a="$MEAS_CPU0" -v b="$cpu1" -v t0="$MEAS_T0" -v t1="$t1" -v d0="$MEAS_DP0" -v d1="$dp1" -v hz="$CLK_TCK" \
      -v fg="$fg1" -v ncpu="$NCPU" '
    BEGIN { split(a,x," "); split(b,y," "); tot=y[3]-x[3]; if (tot<=0) tot=1;
            printf "%.1f %.1f %.1f %.1f\n", 100*(y[1]-x[1])/tot, 100*(y[2]-x[2])/tot, 100*(d1-d0)/hz/(t1-t0),
                   100*fg/hz/(t1-t0)/ncpu }'
}
background_busy() { # CPU busy % of the whole box over 2 s (nothing of ours should be running)
  local a b; a=$(cpu_snap); sleep 2; b=$(cpu_snap)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); t=y[3]-x[3]; if(t<=0)t=1; printf "%.1f\n", 100*(y[1]-x[1])/t}'
}
wait_idle() { # wait up to IDLE_WAIT_S for the box to be quieter than IDLE_MAX_PCT; prints last reading
  local bg t=0
  bg=$(background_busy)
  while awk -v b="$bg" -v m="$IDLE_MAX_PCT" 'BEGIN{exit !(b>m)}' && [[ $t -lt $IDLE_WAIT_S ]]; do
    log "background CPU ${bg}% > ${IDLE_MAX_PCT}%, waiting"; sleep 3; t=$((t+5)); bg=$(background_busy)
  done
  echo "$bg"
}

# ---------------------------------------------------------------- helpers
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{ if(NR==0){print "NA"; exit} if(NR%2) print v[(NR+1)/2]; else printf "%.6g\n", (v[NR/2]+v[NR/2+1])/2 }'; }

declare -A ACC   # ACC[metric]="v1 v2 ..." for the current variant
acc() { ACC[$1]="${ACC[$1]:-} $2"; }

wait_reachable() {
  local _
  for _ in $(seq 1 30); do
    nsx "$NS_VMA" ping -n -c 1 -W 1 "$VM_IP_B" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

encap_check() { # count VXLAN packets on the underlay while pinging; proves traffic crosses the overlay
  local v=$1; local cap="$OUT_DIR/$v/encap.txt" n
  nsx "$NS_HA" timeout 6 tcpdump -l -n -i "$UL_IF" -c 4 "udp dst port $VXLAN_PORT" >"$cap" 2>/dev/null &
  local tpid=$!
  sleep 1
  nsx "$NS_VMA" ping -n -c 4 -i 0.2 -W 1 "$VM_IP_B" >/dev/null 2>&1 || true
  wait "$tpid" 2>/dev/null || true
  n=$(grep -c "\.$VXLAN_PORT: VXLAN" "$cap" || true)
  echo "${n:-0}"
}

start_iperf_server() {
  local pf="$STATE_DIR/iperf3-server.pid"
  rm -f "$pf"
  nsx "$NS_VMB" iperf3 -s -B "$VM_IP_B" -D -I "$pf" --logfile "$OUT_DIR/$CURRENT/iperf3-server.log"
  local _; for _ in $(seq 1 50); do [[ -s "$pf" ]] && break; sleep 0.1; done
  [[ -s "$pf" ]] || die "iperf3 server did not start: $(cat "$OUT_DIR/$CURRENT/iperf3-server.log" 2>/dev/null)"
  mkdir -p "$PIDDIR"
  local pid; pid=$(tr -dc 0-9 <"$pf")
  echo "$pid $(awk '{sub(/^.*\) /,""); print $20}' "/proc/$pid/stat")" >"$PIDDIR/iperf3-server.pid"   # topo.sh down kills it by pid
  if [[ -n "${AUTOGROUP_NICE:-}" && -w "/proc/$pid/autogroup" ]]; then echo "$AUTOGROUP_NICE" >"/proc/$pid/autogroup" 2>/dev/null || true; fi
  sleep 0.3
}

run_ping() { # run_ping VARIANT RUN
  local v=$1 r=$2; local f="$OUT_DIR/$v/ping.$r.txt" s
  [[ "$IDLE_WAIT_S" -le 0 ]] || wait_idle >/dev/null
  nsx "$NS_VMA" ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "$VM_IP_B" >"$f" 2>&1 || true
  # min avg p50 p99 max received
  s=$(grep -o 'time=[0-9.]*' "$f" | cut -d= -f2 | sort -g | awk -v n="$PING_COUNT" '
      {v[NR]=$1; s+=$1}
      END { if (NR==0) { print "NA NA NA NA NA 0"; exit }
            i50=int(0.50*NR); if (i50<0.50*NR) i50++; i99=int(0.99*NR); if (i99<0.99*NR) i99++;
            printf "%.3f %.3f %.3f %.3f %.3f %d\n", v[1], s/NR, v[i50], v[i99], v[NR], NR }')
  read -r pmin pavg p50 p99 pmax prx <<<"$s"
  acc ping_min_ms "$pmin"; acc ping_avg_ms "$pavg"; acc ping_p50_ms "$p50"; acc ping_p99_ms "$p99"
  acc ping_max_ms "$pmax"
  acc ping_loss_pct "$(awk -v n="$PING_COUNT" -v r="$prx" 'BEGIN{printf "%.1f", 100*(n-r)/n}')"
}

run_iperf() { # run_iperf VARIANT RUN NAME iperf-args...
  local v=$1 r=$2 name=$3; shift 3
  local f="$OUT_DIR/$v/$name.$r.json" cpu
  [[ "$IDLE_WAIT_S" -le 0 ]] || wait_idle >/dev/null
  meas_start
  nsx "$NS_VMA" iperf3 -c "$VM_IP_B" -t "$DURATION" -J "$@" >"$f" 2>&1 || true
  cpu=$(meas_stop)
  if ! jq -e '.end.sum_sent' "$f" >/dev/null 2>&1; then
    log "$v/$name run $r failed: $(jq -r '.error // empty' "$f" 2>/dev/null || head -c 300 "$f")"
    acc "${name}_failed" 1
    return 0
  fi
  read -r busy sirq dp fg <<<"$cpu"
  acc "${name}_cpu_busy_pct" "$busy"; acc "${name}_cpu_softirq_pct" "$sirq"; acc "${name}_dp_proc_cpu_pct" "$dp"
  acc "${name}_foreign_cpu_pct" "$fg"
  case "$name" in
    tcp*)
      acc "${name}_gbps" "$(jq -r '.end.sum_received.bits_per_second/1e9 | .*1000|round/1000' "$f")"
      acc "${name}_retrans" "$(jq -r '.end.sum_sent.retransmits // 0' "$f")" ;;
    udp*)
      # rx packets = received payload bytes / datagram length (iperf3 3.12 'packets' on the receiver
      # side counts sequence numbers, not datagrams); both rates use the sender's duration.
      acc "${name}_tx_pps" "$(jq -r '(.end.sum_sent.packets / .end.sum_sent.seconds)|round' "$f")"
      acc "${name}_rx_pps" "$(jq -r --argjson l "$UDP_LEN" '(.end.sum_received.bytes / $l / .end.sum_sent.seconds)|round' "$f")"
      acc "${name}_loss_pct" "$(jq -r --argjson l "$UDP_LEN" '(100 - 100*(.end.sum_received.bytes/$l)/.end.sum_sent.packets)*10|round/10' "$f")" ;;
  esac
}

ORDER=(ping_min_ms ping_avg_ms ping_p50_ms ping_p99_ms ping_max_ms ping_loss_pct)
for t in tcp1 "tcp${PARALLEL}" "udp${UDP_LEN}"; do
  case $t in tcp*) ORDER+=("${t}_gbps" "${t}_retrans") ;; udp*) ORDER+=("${t}_tx_pps" "${t}_rx_pps" "${t}_loss_pct") ;; esac
  ORDER+=("${t}_cpu_busy_pct" "${t}_cpu_softirq_pct" "${t}_dp_proc_cpu_pct" "${t}_foreign_cpu_pct")
done

bench_variant() {
  local v=$1 r k bg n
  ACC=()
  mkdir -p "$OUT_DIR/$v"
  # background load on the (possibly shared) box before we start anything
  bg=$(wait_idle)
  emit "$v" background_cpu_busy_pct "$bg"
  emit "$v" loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"

  CURRENT=$v
  log "=== $v: building topology"
  "$TOPO" up "$v" 2>"$OUT_DIR/$v/topo.log" || { cat "$OUT_DIR/$v/topo.log" >&2; die "topo.sh up $v failed"; }
  wait_reachable || die "$v: $VM_IP_B not reachable from $NS_VMA"
  n=$(encap_check "$v")
  emit "$v" encap_vxlan_pkts_seen "$n"
  [[ "$n" -gt 0 ]] || die "$v: no VXLAN (udp/$VXLAN_PORT) packets seen on $NS_HA/$UL_IF - traffic is not using the overlay"
  # warm-up (ARP/FDB/flow caches), not measured
  nsx "$NS_VMA" ping -n -q -c 20 -i 0.01 -W 1 "$VM_IP_B" >/dev/null 2>&1 || true
  start_iperf_server
  for r in $(seq 1 "$REPEAT"); do
    log "$v run $r/$REPEAT: ping x$PING_COUNT"; run_ping "$v" "$r"; sleep "$SETTLE"
    log "$v run $r/$REPEAT: tcp 1 stream ${DURATION}s"; run_iperf "$v" "$r" tcp1; sleep "$SETTLE"
    log "$v run $r/$REPEAT: tcp $PARALLEL streams ${DURATION}s"; run_iperf "$v" "$r" "tcp$PARALLEL" -P "$PARALLEL"; sleep "$SETTLE"
    log "$v run $r/$REPEAT: udp ${UDP_LEN}B ${DURATION}s"; run_iperf "$v" "$r" "udp$UDP_LEN" -u -l "$UDP_LEN" -b "$UDP_BW"; sleep "$SETTLE"
  done
  for k in "${ORDER[@]}"; do
    [[ -n "${ACC[$k]:-}" ]] || continue
    emit "$v" "$k" "$(median <<<"${ACC[$k]}")"
    [[ "$REPEAT" -le 1 ]] || emit "$v" "${k}_all" "$(echo ${ACC[$k]} | tr ' ' ',')"
  done
  for k in "${!ACC[@]}"; do [[ "$k" != *_failed ]] || emit "$v" "$k" "$(echo ${ACC[$k]} | wc -w)"; done
  save_logs "$v"
  "$TOPO" down 2>>"$OUT_DIR/$v/topo.log"
  # plug-in forwarders print their counters when topo.sh down stops them
  cp "$STATE_DIR"/dp-*.log "$OUT_DIR/$v/" 2>/dev/null || true
  rm -f "$STATE_DIR"/dp-*.log
  CURRENT=""
}

# ---------------------------------------------------------------- main
{
  echo "meta.date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "meta.kernel=$(uname -r)"
  echo "meta.cpus=$NCPU"
  echo "meta.cpu_model=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo | tr ' ' '_')"
  echo "meta.mem_gib=$(awk '/MemTotal/{printf "%.0f", $2/1048576}' /proc/meminfo)"
  echo "meta.iperf3=$(iperf3 --version | awk 'NR==1{print $2}')"
  echo "meta.ovs=$(ovs-vswitchd --version 2>/dev/null | awk 'NR==1{print $NF}' || echo none)"
  echo "meta.duration_s=$DURATION"; echo "meta.ping_count=$PING_COUNT"; echo "meta.ping_interval_s=$PING_INTERVAL"
  echo "meta.parallel=$PARALLEL"; echo "meta.udp_len=$UDP_LEN"; echo "meta.udp_bw=$UDP_BW"; echo "meta.repeat=$REPEAT"
  echo "meta.nice=$BENCH_NICE"
  echo "meta.vm_mtu=${VM_MTU:-1450}"
} | tee -a "$RESULTS"

for v in "${VARIANTS[@]}"; do bench_variant "$v"; done

# side-by-side summary
if [[ ${#VARIANTS[@]} -gt 0 ]]; then
  {
    printf 'metric'; for v in "${VARIANTS[@]}"; do printf ' %s' "$v"; done; echo
    for k in background_cpu_busy_pct "${ORDER[@]}"; do
      printf '%s' "$k"
      for v in "${VARIANTS[@]}"; do printf ' %s' "$(grep -m1 "^$v\.$k=" "$RESULTS" | cut -d= -f2- || true)"; done
      echo
    done
  } | column -t >"$OUT_DIR/summary.txt"
  echo "# summary ($OUT_DIR/summary.txt)" >&2
  cat "$OUT_DIR/summary.txt" >&2
fi
log "results: $RESULTS"
