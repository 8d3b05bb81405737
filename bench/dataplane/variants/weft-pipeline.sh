# shellcheck shell=bash
# Plug-in variant 'weft-pipeline': the weft forwarder running the real host pipeline
# (weft-fwd --view), as the agent's backend does: the program the compiler makes for the
# benchmark's topology (one l2-network, vmA on host-a and vmB on host-b, one security group
# allowing everything, stateful), a flow cache in front, conntrack, port security.
# Sourced by topo.sh after common_up (namespaces + underlay veth exist, no addresses yet).
#
# WEFT_FWD       path to the weft-fwd binary (run.sh builds it in release mode)
# WEFT_VIEW_DIR  host-a.view, host-b.view, bench.env from the bench-view example (run.sh makes them)
# WEFT_FWD_ARGS  extra flags, e.g. "--threads per-direction", "--flow-cache 4096"

WEFT_FWD="${WEFT_FWD:?set WEFT_FWD=/path/to/weft-fwd (run.sh does this)}"
WEFT_VIEW_DIR="${WEFT_VIEW_DIR:?set WEFT_VIEW_DIR (run.sh generates the views)}"
WEFT_FWD_ARGS="${WEFT_FWD_ARGS:-}"
# shellcheck disable=SC1091 # generated: TAP_A TAP_B MAC_A MAC_B
source "$WEFT_VIEW_DIR/bench.env"

weftp_host_up() { # hns vmns local_ul host tap mac
  local hns=$1 vmns=$2 lip=$3 host=$4 tap=$5 mac=$6 _
  ip -n "$hns" addr add "$lip/$UL_PREFIX" dev "$UL_IF"
  # shellcheck disable=SC2086 # WEFT_FWD_ARGS is a list of flags
  spawn "dp-weftp-$hns" "$hns" "$WEFT_FWD" --view "$WEFT_VIEW_DIR/$host.view" --host "$host" \
      --local "$lip" --port "$VXLAN_PORT" $WEFT_FWD_ARGS
  for _ in $(seq 1 100); do ip -n "$hns" link show "$tap" >/dev/null 2>&1 && break; sleep 0.05; done
  ip -n "$hns" link show "$tap" >/dev/null 2>&1 || die "weft-fwd in $hns did not create $tap (see $STATE_DIR/dp-weftp-$hns.log)"
  # The TAP's kernel side becomes the VM's NIC, with the port's MAC (port security checks it).
  ip -n "$hns" link set "$tap" netns "$vmns"
  ip -n "$vmns" link set "$tap" name "$VM_IF"
  ip -n "$vmns" link set "$VM_IF" address "$mac"
}

variant_up() {
  weftp_host_up "$NS_HA" "$NS_VMA" "$UL_IP_A" host-a "$TAP_A" "$MAC_A"
  weftp_host_up "$NS_HB" "$NS_VMB" "$UL_IP_B" host-b "$TAP_B" "$MAC_B"
  vm_addr_up "$NS_VMA" "$VM_IP_A"
  vm_addr_up "$NS_VMB" "$VM_IP_B"
}

variant_down() { :; }   # topo.sh kills tracked pids (SIGTERM: weft-fwd prints its counters) and deletes namespaces
