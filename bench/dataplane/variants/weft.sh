# shellcheck shell=bash
# Plug-in variant 'weft': the weft-dataplane forwarder (crates/dataplane, binary weft-fwd).
# Sourced by topo.sh after common_up (namespaces + underlay veth exist, no addresses yet).
# Contract and helpers: see README.md (adapted from the shared harness's variants/README.md).
#
# WEFT_FWD      path to the weft-fwd binary (run.sh builds it in release mode)
# WEFT_FWD_ARGS extra flags, e.g. "--no-offload", "--threads single", "--no-coalesce"

WEFT_FWD="${WEFT_FWD:?set WEFT_FWD=/path/to/weft-fwd (run.sh does this)}"
WEFT_FWD_ARGS="${WEFT_FWD_ARGS:-}"

weft_host_up() { # hns vmns local_ul remote_ul
  local hns=$1 vmns=$2 lip=$3 rip=$4 tap=fwtap0 _
  ip -n "$hns" addr add "$lip/$UL_PREFIX" dev "$UL_IF"
  # shellcheck disable=SC2086 # WEFT_FWD_ARGS is a list of flags
  spawn "dp-weft-$hns" "$hns" "$WEFT_FWD" --tap "$tap" --local "$lip" --remote "$rip" \
      --vni "$VNI" --port "$VXLAN_PORT" $WEFT_FWD_ARGS
  for _ in $(seq 1 100); do ip -n "$hns" link show "$tap" >/dev/null 2>&1 && break; sleep 0.05; done
  ip -n "$hns" link show "$tap" >/dev/null 2>&1 || die "weft-fwd in $hns did not create $tap (see $STATE_DIR/dp-weft-$hns.log)"
  # The TAP's kernel side becomes the VM's NIC; the forwarder keeps the fd.
  ip -n "$hns" link set "$tap" netns "$vmns"
  ip -n "$vmns" link set "$tap" name "$VM_IF"
  if [[ " $WEFT_FWD_ARGS " == *" --no-offload "* ]]; then
    # Without virtio-net headers the guest must not hand over partial checksums or super-frames.
    nsx "$vmns" ethtool -K "$VM_IF" tx off tso off gso off >/dev/null 2>&1 || true
  fi
}

variant_up() {
  weft_host_up "$NS_HA" "$NS_VMA" "$UL_IP_A" "$UL_IP_B"
  weft_host_up "$NS_HB" "$NS_VMB" "$UL_IP_B" "$UL_IP_A"
  vm_addr_up "$NS_VMA" "$VM_IP_A"
  vm_addr_up "$NS_VMB" "$VM_IP_B"
}

variant_down() { :; }   # topo.sh kills tracked pids (SIGTERM: weft-fwd prints its counters) and deletes namespaces
