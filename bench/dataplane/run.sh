#!/usr/bin/env bash
# run.sh - one command: build weft-fwd (release), measure the Linux kernel bridge+VXLAN path, OVS's
# userspace datapath and the weft forwarder (static bridge, and the real host pipeline) on the same
# namespaces in one run, then print the side-by-side table and weft's ratios against the goals of
# the forwarder issue.
#
# Usage: bench/dataplane/run.sh [VARIANT ...]     (default: kernel ovs-userspace weft weft-pipeline)
#   Other variants: kernel-nooffload ovs-userspace-tap, and weft flavours in variants/:
#   weft-nooffload (TAP without virtio-net headers), weft-split (a thread per direction), weft-nocoalesce,
#   weft-pipeline (weft-fwd --view: the compiled program of this topology, flow cache, conntrack).
# Environment: everything bench.sh/topo.sh take (REPEAT, DURATION, IDLE_WAIT_S, ...), plus
#   CARGO_TARGET_DIR (default <repo>/target), SKIP_BUILD=1 to use an existing binary.
# Runs as root. Uses its own namespaces (whA whB wvA wvB) and state dir (/run/weft-dpbench), so it
# does not collide with the shared harness.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
: "${CARGO_TARGET_DIR:=$REPO/target}"
export CARGO_TARGET_DIR
: "${STATE_DIR:=/run/weft-dpbench}" "${NS_HA:=whA}" "${NS_HB:=whB}" "${NS_VMA:=wvA}" "${NS_VMB:=wvB}"
export STATE_DIR NS_HA NS_HB NS_VMA NS_VMB
: "${OUT_DIR:=$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"
export OUT_DIR

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$REPO" && cargo build --release -q -p weft-dataplane --bin weft-fwd --example bench-view)
fi
export WEFT_FWD="$CARGO_TARGET_DIR/release/weft-fwd"
[[ -x "$WEFT_FWD" ]] || { echo "run.sh: $WEFT_FWD missing" >&2; exit 1; }

VARIANTS=("$@"); [[ ${#VARIANTS[@]} -gt 0 ]] || VARIANTS=(kernel ovs-userspace weft weft-pipeline)

# The weft-pipeline variant runs the program the compiler makes for this topology.
export WEFT_VIEW_DIR="$OUT_DIR/views"
mkdir -p "$WEFT_VIEW_DIR"
"$CARGO_TARGET_DIR/release/examples/bench-view" "$WEFT_VIEW_DIR" \
  "${UL_IP_A:-192.0.2.1}" "${UL_IP_B:-192.0.2.2}" "${VM_IP_A:-10.0.0.1}" "${VM_IP_B:-10.0.0.2}"

"$HERE/bench.sh" "${VARIANTS[@]}"

# ---------------------------------------------------------------- ratios against the goals
R="$OUT_DIR/results.env"
get() { grep -m1 "^$1=" "$R" | cut -d= -f2- || true; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0 || a == "NA" || b == "NA") print "n/a"; else printf "%.2f", a / b }'; }
{
  echo
  echo "# weft vs baselines (same run; $OUT_DIR)"
  printf '%-22s %10s %10s %12s %10s %10s %s\n' metric weft kernel ovs-user weft/kern weft/ovs goal
  for wv in weft weft-pipeline; do
    [[ -n "$(get "$wv.ping_avg_ms")" ]] || continue
    echo "## $wv"
    for m in tcp1_gbps tcp4_gbps udp64_rx_pps ping_avg_ms ping_p99_ms; do
      w=$(get "$wv.$m"); k=$(get "kernel.$m"); o=$(get "ovs-userspace.$m")
      case $m in
        tcp*) goal="weft/kern >= 0.50 and weft/ovs >= 3.0" ;;
        ping_avg_ms) goal="weft <= 0.25 ms" ;;
        *) goal="" ;;
      esac
      printf '%-22s %10s %10s %12s %10s %10s %s\n' "$m" "${w:-n/a}" "${k:-n/a}" "${o:-n/a}" "$(ratio "$w" "$k")" "$(ratio "$w" "$o")" "$goal"
    done
  done
  for v in "${VARIANTS[@]}"; do
    printf '%-22s %s\n' "$v.foreign_cpu%" "$(get "$v.tcp1_foreign_cpu_pct")/$(get "$v.tcp4_foreign_cpu_pct")/$(get "$v.udp64_foreign_cpu_pct") (tcp1/tcp4/udp; >1 means a disturbed run)"
  done
} | tee "$OUT_DIR/ratios.txt"
