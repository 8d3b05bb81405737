#!/usr/bin/env bash
# Copied unchanged from the team's baseline harness (/work/shared/bench/dataplane/topo.sh, 2026-11-22)
# so the repo does not depend on it at run time.
#
# topo.sh - namespace-only two-host VXLAN overlay topology for dataplane benchmarks.
#
#   vmA [eth0 10.0.0.1] --- hA [dataplane] --(veth ul0 192.0.2.1 <-> 192.0.2.2)-- hB [dataplane] --- vmB [eth0 10.0.0.2]
#
# Usage:
#   topo.sh up VARIANT     build the topology (tears down leftovers of a previous run first)
#   topo.sh down           tear everything down (only what this script created)
#   topo.sh status         show namespaces / links / processes
#   topo.sh variants       list available variants
#
# Built-in variants:
#   kernel         VM veth -> Linux bridge br0 in host ns, bridge enslaves vxlan100 (VNI 100, dstport 4789)
#   ovs-userspace  VM veth -> OVS bridge br-int (datapath_type=netdev, no kernel module) with an OVS vxlan
#                  port; underlay ul0 is a port of OVS bridge br-phy which carries the tunnel IP.
#                  One ovsdb-server + ovs-vswitchd per host namespace.
#                  OVS_VM_PORT=veth (default) | tap  (tap: OVS-created tap moved into the VM namespace)
#   ovs-userspace-tap  same as ovs-userspace with OVS_VM_PORT=tap
#   kernel-nooffload   kernel with VM_OFFLOADS=off (no TSO/GSO/tx-csum on the VM links: MTU-sized
#                      frames, as a TAP-based userspace forwarder without vnet_hdr would see them)
# Plug-in variants: variants/<name>.sh defining variant_up/variant_down (see variants/README.md).
#
# Safety: all addresses are TEST-NET (underlay) / 10.x (overlay) and only exist inside namespaces that
# this script creates; it refuses other address ranges and never touches the root namespace's links.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------- configuration (env overridable)
: "${NS_HA:=hA}" "${NS_HB:=hB}" "${NS_VMA:=vmA}" "${NS_VMB:=vmB}"
: "${UL_IP_A:=192.0.2.1}" "${UL_IP_B:=192.0.2.2}" "${UL_PREFIX:=24}"
: "${VM_IP_A:=10.0.0.1}" "${VM_IP_B:=10.0.0.2}" "${VM_PREFIX:=24}"
: "${VNI:=100}" "${VXLAN_PORT:=4789}"
: "${UL_MTU:=1500}" "${VM_MTU:=1450}"
: "${UL_IF:=ul0}"          # underlay veth name (same name in hA and hB)
: "${VM_IF:=eth0}"         # overlay endpoint name inside vmA / vmB
: "${VM_PEER_IF:=vport0}"  # host-side end of the VM veth (in hA / hB)
: "${STATE_DIR:=/run/dpbench}"
: "${OVS_VM_PORT:=veth}"
: "${VM_OFFLOADS:=default}" # default | off  (kernel variant; OVS always turns them off)
: "${OVS_SCHEMA:=/usr/share/openvswitch/vswitch.ovsschema}"
export VM_OFFLOADS
export NS_HA NS_HB NS_VMA NS_VMB UL_IP_A UL_IP_B UL_PREFIX VM_IP_A VM_IP_B VM_PREFIX VNI VXLAN_PORT \
       UL_MTU VM_MTU UL_IF VM_IF VM_PEER_IF STATE_DIR OVS_VM_PORT

NS_ALL=("$NS_HA" "$NS_HB" "$NS_VMA" "$NS_VMB")
OWNED="$STATE_DIR/namespaces"   # namespaces created by us (one per line)
PIDDIR="$STATE_DIR/pids"        # "<pid> <comm>" files of processes started by us

log() { printf '[topo] %s\n' "$*" >&2; }
die() { printf '[topo] ERROR: %s\n' "$*" >&2; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- address safety
ip_in() { # ip_in IP a.b.c. -> true if IP starts with prefix
  [[ "$1" == "$2"* ]]
}
check_addresses() {
  local ip
  for ip in "$UL_IP_A" "$UL_IP_B"; do
    ip_in "$ip" 192.0.2. || ip_in "$ip" 198.51.100. || ip_in "$ip" 203.0.113. \
      || die "underlay address $ip is not TEST-NET (192.0.2/24, 198.51.100/24, 203.0.113/24)"
  done
  for ip in "$VM_IP_A" "$VM_IP_B"; do
    ip_in "$ip" 10. || die "overlay address $ip is not in 10.0.0.0/8"
  done
  [[ "$UL_PREFIX" -ge 24 ]] || die "UL_PREFIX must be >= 24"
}

# ---------------------------------------------------------------- process tracking
# A tracked process is identified by pid AND its start time (field 22 of /proc/PID/stat), so a
# recycled pid is never signalled. Start time survives exec (e.g. 'ip netns exec CMD').
# Pid files: $PIDDIR/NAME.pid containing "PID STARTTIME". Names starting with 'dp-' are dataplane
# processes whose CPU time bench.sh reports.
pid_starttime() { awk '{sub(/^.*\) /,""); print $20}' "/proc/$1/stat" 2>/dev/null; }
# track NAME PID: remember a process we started
track() {
  local name=$1 pid=$2 st
  st=$(pid_starttime "$pid") || true
  [[ -n "$st" ]] || die "process $pid ($name) is not running"
  mkdir -p "$PIDDIR"
  echo "$pid $st" >"$PIDDIR/$name.pid"
  # daemons that setsid() get their own scheduler autogroup, where the process nice value does not
  # count against other sessions; bench.sh sets AUTOGROUP_NICE so they get the same boost as itself
  if [[ -n "${AUTOGROUP_NICE:-}" && -w "/proc/$pid/autogroup" ]]; then
    echo "$AUTOGROUP_NICE" >"/proc/$pid/autogroup" 2>/dev/null || true
  fi
}
# track_pidfile NAME FILE: same, pid taken from a daemon-written pid file (waits for it)
track_pidfile() {
  local name=$1 file=$2 _
  for _ in $(seq 1 100); do [[ -s "$file" ]] && break; sleep 0.05; done
  [[ -s "$file" ]] || die "pid file $file for $name not written"
  track "$name" "$(head -n1 "$file" | tr -dc 0-9)"
}
# spawn NAME NS CMD...: start CMD in namespace NS in the background (stdio -> $STATE_DIR/NAME.log) and
# track it. 'ip netns exec' execs CMD, so the tracked pid is CMD itself (do not background a shell
# function and track its $!: that would track a subshell, not the program).
spawn() {
  local name=$1 ns=$2; shift 2
  mkdir -p "$STATE_DIR"
  ip netns exec "$ns" "$@" >"$STATE_DIR/$name.log" 2>&1 </dev/null &
  local pid=$!
  track "$name" "$pid"
  sleep 0.1
  kill -0 "$pid" 2>/dev/null || die "$name exited immediately: $(tail -n 5 "$STATE_DIR/$name.log")"
}
# tracked_alive FILE -> prints pid if the recorded process is still the same one
tracked_alive() {
  local pid st
  read -r pid st _ <"$1" 2>/dev/null || return 1
  [[ -n "$pid" && -n "$st" && "$(pid_starttime "$pid")" == "$st" ]] && echo "$pid"
}
kill_tracked() {
  local f pid _
  [[ -d "$PIDDIR" ]] || return 0
  for f in "$PIDDIR"/*.pid; do
    [[ -e "$f" ]] || continue
    if pid=$(tracked_alive "$f"); then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do [[ -n "$(pid_starttime "$pid")" ]] || break; sleep 0.1; done
      if [[ -n "$(pid_starttime "$pid")" ]]; then
        log "pid $pid ($f) ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$f"
  done
}

# ---------------------------------------------------------------- namespaces
ns_exists() { [[ -e "/var/run/netns/$1" ]]; }
ns_owned() { [[ -f "$OWNED" ]] && grep -qx "$1" "$OWNED"; }

ns_create() {
  local ns=$1
  if ns_exists "$ns"; then
    ns_owned "$ns" || die "namespace $ns exists but was not created by topo.sh (state $OWNED); refusing"
    return 0
  fi
  ip netns add "$ns"
  echo "$ns" >>"$OWNED"
  nsx "$ns" ip link set lo up
  # keep the namespaces quiet: no IPv6 (no NDP/MLD/RS chatter), IPv4 only on our own addresses
  nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

ns_delete_all() {
  local ns
  [[ -f "$OWNED" ]] || return 0
  while read -r ns; do
    [[ -n "$ns" ]] || continue
    if ns_exists "$ns"; then
      # anything still running inside (e.g. crashed helpers that escaped tracking) is reported, not killed
      local left; left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
      [[ -z "$left" ]] || log "WARNING: processes still in $ns: $left (not started via tracking; not killed)"
      ip netns del "$ns" || log "WARNING: could not delete netns $ns"
    fi
  done <"$OWNED"
  rm -f "$OWNED"
}

# common part: four namespaces, underlay veth, VM side addresses (VM link itself is variant specific)
common_up() {
  check_addresses
  mkdir -p "$STATE_DIR"
  local ns; for ns in "${NS_ALL[@]}"; do ns_create "$ns"; done
  ip -n "$NS_HA" link add "$UL_IF" mtu "$UL_MTU" type veth peer name "$UL_IF" netns "$NS_HB" mtu "$UL_MTU"
  ip -n "$NS_HA" link set "$UL_IF" up
  ip -n "$NS_HB" link set "$UL_IF" up
}

# veth between VM ns and host ns: VM end is $VM_IF, host end $VM_PEER_IF
vm_veth_up() {
  local vmns=$1 hns=$2
  ip -n "$hns" link add "$VM_PEER_IF" mtu "$VM_MTU" type veth peer name "$VM_IF" netns "$vmns" mtu "$VM_MTU"
  ip -n "$hns" link set "$VM_PEER_IF" up
}

vm_addr_up() { # vm_addr_up NS IP  (interface $VM_IF must exist in NS)
  local ns=$1 addr=$2 _
  for _ in $(seq 1 100); do ip -n "$ns" link show "$VM_IF" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$ns" link show "$VM_IF" >/dev/null 2>&1 || die "$VM_IF did not appear in $ns"
  ip -n "$ns" link set "$VM_IF" mtu "$VM_MTU"
  ip -n "$ns" addr replace "$addr/$VM_PREFIX" dev "$VM_IF"
  ip -n "$ns" link set "$VM_IF" up
}

# ---------------------------------------------------------------- variant: kernel
kernel_host_up() { # hns vmns local_ul remote_ul
  local hns=$1 vmns=$2 lip=$3 rip=$4
  ip -n "$hns" addr add "$lip/$UL_PREFIX" dev "$UL_IF"
  vm_veth_up "$vmns" "$hns"
  ip -n "$hns" link add "vxlan$VNI" mtu "$VM_MTU" type vxlan id "$VNI" local "$lip" remote "$rip" \
     dstport "$VXLAN_PORT" dev "$UL_IF"
  ip -n "$hns" link add br0 mtu "$VM_MTU" type bridge
  ip -n "$hns" link set "vxlan$VNI" master br0
  ip -n "$hns" link set "$VM_PEER_IF" master br0
  ip -n "$hns" link set "vxlan$VNI" up
  ip -n "$hns" link set br0 up
}
kernel_up() {
  kernel_host_up "$NS_HA" "$NS_VMA" "$UL_IP_A" "$UL_IP_B"
  kernel_host_up "$NS_HB" "$NS_VMB" "$UL_IP_B" "$UL_IP_A"
  vm_addr_up "$NS_VMA" "$VM_IP_A"
  vm_addr_up "$NS_VMB" "$VM_IP_B"
  if [[ "$VM_OFFLOADS" == off ]]; then
    local p
    for p in "$NS_VMA:$VM_IF" "$NS_VMB:$VM_IF" "$NS_HA:$VM_PEER_IF" "$NS_HB:$VM_PEER_IF"; do
      nsx "${p%%:*}" ethtool -K "${p#*:}" tx off tso off gso off >/dev/null 2>&1 || true
    done
  fi
}
kernel_down() { :; }   # everything lives in the namespaces

# ---------------------------------------------------------------- variant: ovs-userspace
ovs_dir() { echo "$STATE_DIR/ovs-$1"; }
ovs_vsctl() { local d; d=$(ovs_dir "$1"); shift; ovs-vsctl --db="unix:$d/db.sock" --timeout=20 "$@"; }
ovs_appctl() { local d; d=$(ovs_dir "$1"); shift; ovs-appctl -t "$d/ovs-vswitchd.ctl" --timeout=20 "$@"; }

ovs_start() { # hns
  local hns=$1 d; d=$(ovs_dir "$hns")
  command -v ovs-vswitchd >/dev/null || die "ovs-vswitchd not installed (apt-get install openvswitch-switch)"
  rm -rf "$d"; mkdir -p "$d"
  # private run/log/db dirs so that two instances (one per host ns) never collide with a system OVS
  export OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d"
  ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA"
  nsx "$hns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --unixctl="$d/ovsdb-server.ctl" \
     --pidfile="$d/ovsdb-server.pid" --log-file="$d/ovsdb-server.log" -vconsole:off --detach --no-chdir
  track_pidfile "ovsdb-$hns" "$d/ovsdb-server.pid"
  ovs_vsctl "$hns" --no-wait init
  # hw-offload/tso off: plain netdev-linux (AF_PACKET/tap) ports, no DPDK, no kernel datapath module
  ovs_vsctl "$hns" --no-wait set Open_vSwitch . other_config:hw-offload=false
  nsx "$hns" ovs-vswitchd "unix:$d/db.sock" --unixctl="$d/ovs-vswitchd.ctl" --pidfile="$d/ovs-vswitchd.pid" \
     --log-file="$d/ovs-vswitchd.log" -vconsole:off --detach --no-chdir
  track_pidfile "dp-vswitchd-$hns" "$d/ovs-vswitchd.pid"
  unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR OVS_SYSCONFDIR
}

ovs_host_up() { # hns vmns local_ul remote_ul
  local hns=$1 vmns=$2 lip=$3 rip=$4
  ovs_start "$hns"
  # underlay: ul0 becomes an OVS port of br-phy; the tunnel IP sits on br-phy (OVS-internal tap)
  ovs_vsctl "$hns" add-br br-phy -- set bridge br-phy datapath_type=netdev fail-mode=standalone \
     -- add-port br-phy "$UL_IF"
  ip -n "$hns" link set br-phy mtu "$UL_MTU" up
  ip -n "$hns" addr add "$lip/$UL_PREFIX" dev br-phy
  # The kernel stack still sees every frame arriving on ul0 (AF_PACKET only taps). Stop it from
  # answering ARP for br-phy's address on ul0 and from consuming/ICMP-rejecting the VXLAN packets.
  nsx "$hns" sysctl -qw "net.ipv4.conf.$UL_IF.arp_ignore=1" "net.ipv4.conf.all.arp_ignore=1"
  ip -n "$hns" rule add pref 10 iif "$UL_IF" blackhole
  # overlay bridge with the VXLAN port and the VM port
  ovs_vsctl "$hns" add-br br-int -- set bridge br-int datapath_type=netdev fail-mode=standalone \
     -- add-port br-int "vxlan$VNI" -- set interface "vxlan$VNI" type=vxlan \
        options:remote_ip="$rip" options:local_ip="$lip" options:key="$VNI" options:dst_port="$VXLAN_PORT"
  case "$OVS_VM_PORT" in
    veth)
      vm_veth_up "$vmns" "$hns"
      # userspace datapath on netdev-linux ports: no checksum/TSO offload (OVS docs), else frames
      # arrive with partial checksums or as >MTU GSO super-frames that AF_PACKET truncates
      nsx "$vmns" ethtool -K "$VM_IF" tx off tso off gso off >/dev/null 2>&1 || true
      nsx "$hns" ethtool -K "$VM_PEER_IF" tx off tso off gso off >/dev/null 2>&1 || true
      ovs_vsctl "$hns" add-port br-int "$VM_PEER_IF"
      ;;
    tap)
      # OVS creates the tap (netdev-linux 'tap' class) and keeps its fd; move the kernel side into the VM ns
      ovs_vsctl "$hns" add-port br-int "tap$VNI" -- set interface "tap$VNI" type=tap
      local _; for _ in $(seq 1 100); do ip -n "$hns" link show "tap$VNI" >/dev/null 2>&1 && break; sleep 0.1; done
      ip -n "$hns" link set "tap$VNI" netns "$vmns"
      ip -n "$vmns" link set "tap$VNI" name "$VM_IF"
      nsx "$vmns" ethtool -K "$VM_IF" tx off tso off gso off >/dev/null 2>&1 || true
      ;;
    *) die "OVS_VM_PORT must be veth or tap" ;;
  esac
  nsx "$hns" ethtool -K "$UL_IF" tx off tso off gso off >/dev/null 2>&1 || true
  ip -n "$hns" addr flush dev "$UL_IF"
}
ovs_up() {
  ovs_host_up "$NS_HA" "$NS_VMA" "$UL_IP_A" "$UL_IP_B"
  ovs_host_up "$NS_HB" "$NS_VMB" "$UL_IP_B" "$UL_IP_A"
  vm_addr_up "$NS_VMA" "$VM_IP_A"
  vm_addr_up "$NS_VMB" "$VM_IP_B"
  # sanity: both vswitchd must still be alive and must have the tunnel route
  local h; for h in "$NS_HA" "$NS_HB"; do
    ovs_appctl "$h" version >/dev/null || die "ovs-vswitchd in $h is not responding (see $(ovs_dir "$h")/ovs-vswitchd.log)"
  done
}
ovs_down() {
  local h d
  for h in "$NS_HA" "$NS_HB"; do
    d=$(ovs_dir "$h")
    [[ -S "$d/ovs-vswitchd.ctl" ]] && ovs-appctl -t "$d/ovs-vswitchd.ctl" --timeout=5 exit --cleanup >/dev/null 2>&1 || true
  done
}

# ---------------------------------------------------------------- dispatch
load_variant() { # load_variant VARIANT -> sets UP_FN / DOWN_FN (plug-ins are sourced into this shell)
  case "$1" in
    kernel) UP_FN=kernel_up; DOWN_FN=kernel_down ;;
    ovs-userspace|ovs) UP_FN=ovs_up; DOWN_FN=ovs_down ;;
    ovs-userspace-tap) OVS_VM_PORT=tap; UP_FN=ovs_up; DOWN_FN=ovs_down ;;
    kernel-nooffload) VM_OFFLOADS=off; UP_FN=kernel_up; DOWN_FN=kernel_down ;;
    *)
      local f="$HERE/variants/$1.sh"
      [[ "$1" =~ ^[A-Za-z0-9_-]+$ && -f "$f" ]] \
        || die "unknown variant '$1' (built-in: kernel ovs-userspace; plug-ins: $HERE/variants/*.sh)"
      # shellcheck source=/dev/null
      source "$f"
      UP_FN=variant_up; DOWN_FN=variant_down ;;
  esac
}

do_down() {
  local v=""
  [[ -f "$STATE_DIR/variant" ]] && v=$(cat "$STATE_DIR/variant")
  if [[ -n "$v" ]] && ( load_variant "$v" ) >/dev/null 2>&1; then
    load_variant "$v"
    "$DOWN_FN" || log "WARNING: $v teardown hook failed"
  fi
  kill_tracked
  ns_delete_all
  rm -f "$STATE_DIR/variant"
}

UP_DONE=0
on_exit_up() {
  local rc=$?
  if [[ $UP_DONE -eq 0 ]]; then
    if [[ "${KEEP_ON_FAIL:-0}" == 1 ]]; then log "up failed (rc=$rc); KEEP_ON_FAIL=1, leaving state for inspection"
    else log "up failed (rc=$rc); tearing down"; do_down || true; fi
  fi
}

do_up() {
  local v=$1
  do_down
  load_variant "$v"
  mkdir -p "$STATE_DIR"
  rm -rf "$STATE_DIR"/ovs-*   # stale OVS state/logs of an earlier run
  trap on_exit_up EXIT
  echo "$v" >"$STATE_DIR/variant"
  common_up
  "$UP_FN"
  UP_DONE=1
  log "variant $v is up: $NS_VMA($VM_IP_A) <-> $NS_VMB($VM_IP_B) over $NS_HA($UL_IP_A) <-> $NS_HB($UL_IP_B), VNI $VNI udp/$VXLAN_PORT"
}

do_status() {
  echo "variant=$(cat "$STATE_DIR/variant" 2>/dev/null || echo none)"
  local ns; for ns in "${NS_ALL[@]}"; do
    ns_exists "$ns" || { echo "# $ns: absent"; continue; }
    echo "# $ns"; ip -n "$ns" -br addr
  done
  [[ -d "$PIDDIR" ]] && cat "$PIDDIR"/*.pid 2>/dev/null | sed 's/^/# pid /' || true
}

case "${1:-}" in
  up) [[ $# -eq 2 ]] || die "usage: $0 up VARIANT"; do_up "$2" ;;
  down) do_down ;;
  status) do_status ;;
  variants) echo kernel; echo kernel-nooffload; echo ovs-userspace; echo ovs-userspace-tap; ls "$HERE/variants/" 2>/dev/null | sed -n 's/\.sh$//p' ;;
  *) sed -n '2,24p' "$0"; exit 2 ;;
esac
