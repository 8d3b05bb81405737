#!/usr/bin/env bash
# Side-by-side BGP advertisement benchmark (one command, needs root, frr and
# gobgpd installed):
#
#   sudo bench/bgp/run.sh            # 100,000 routes, 1 round
#   N=20000 ROUNDS=3 bench/bgp/run.sh
#
# Topology, one network namespace each, point-to-point veths:
#
#   weft (bench_speaker, AS 65000) 192.0.2.1 ──── 192.0.2.2  ┐
#   gobgp (gobgpd, AS 65020)       192.0.2.5 ──── 192.0.2.6  ├ target FRR
#   src (FRR bgpd, AS 65010)       192.0.2.9 ──── 192.0.2.10 ┘ (AS 65001)
#   src                            192.0.2.13 ─── 192.0.2.14  gobgp
#
# All three senders hold the same N VPNv4 routes before the clock starts
# (RD 65000:1..100, 10.x.y.z/32, labels 16..1015, RT 65000:1):
# - weft: bench_speaker exports them at start;
# - FRR src: `network ... rd ... label ... route-map` statements in its
#   config (FRR's only way to originate VPNv4 without a kernel VRF);
# - GoBGP: learns them from FRR src over BGP beforehand (the gobgp CLI adds
#   one route per process, and `gobgp mrt inject` takes no VPNv4), so it
#   holds them in its RIB as it would any learned route.
# Every sender is passive and the target's neighbor starts `shutdown`
# (target connect retry 1 s; GoBGP's idle hold after a reset 1 s instead
# of 30 s, or rounds after the first would measure that wait). The
# clock starts at `no neighbor X shutdown` on the target and stops when the
# target's `show bgp ipv4 vpn summary json` shows N prefixes received from
# X (polled every 50 ms). Then the neighbor is shut again before the next.
set -euo pipefail

N=${N:-100000}
ROUNDS=${ROUNDS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TAG=wbb$$
WORK=$(mktemp -d /tmp/weft-bgp-bench.XXXXXX)
chmod 755 "$WORK"

[ "$(id -u)" = 0 ] || { echo "run as root: the benchmark builds network namespaces" >&2; exit 1; }
command -v gobgpd >/dev/null && [ -x /usr/lib/frr/bgpd ] || {
    echo "needs Debian's frr and gobgpd: apt-get install -y frr gobgpd" >&2; exit 1; }

cleanup() {
    disown -a 2>/dev/null || true
    for ns in tgt weft gob src; do
        for pid in $(ip netns pids "$TAG$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$TAG$ns" 2>/dev/null || true
    done
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "building bench_speaker (release)..." >&2
(cd "$ROOT" && cargo build -q --release -p weft-bgp --example bench_speaker)
SPEAKER=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_speaker

for ns in tgt weft gob src; do ip netns add "$TAG$ns"; ip -n "$TAG$ns" link set lo up; done
link() { # nsA addrA nsB addrB ifname
    ip link add "$5" netns "$TAG$1" type veth peer name "$5" netns "$TAG$3"
    ip -n "$TAG$1" addr add "$2" dev "$5"; ip -n "$TAG$1" link set "$5" up
    ip -n "$TAG$3" addr add "$4" dev "$5"; ip -n "$TAG$3" link set "$5" up
}
link weft 192.0.2.1/30 tgt 192.0.2.2/30 w0
link gob 192.0.2.5/30 tgt 192.0.2.6/30 g0
link src 192.0.2.9/30 tgt 192.0.2.10/30 s0
link src 192.0.2.13/30 gob 192.0.2.14/30 sg0

frr_start() { # ns dir
    local ns=$1 d=$2
    chown -R frr:frr "$d"
    ip netns exec "$TAG$ns" /usr/lib/frr/zebra -i "$d/zebra.pid" -z "$d/zserv.api" \
        --vty_socket "$d" -u frr -g frr -f /dev/null >"$d/zebra.out" 2>&1 &
    for _ in $(seq 100); do [ -S "$d/zserv.api" ] && break; sleep 0.1; done
    ip netns exec "$TAG$ns" /usr/lib/frr/bgpd -i "$d/bgpd.pid" -z "$d/zserv.api" \
        --vty_socket "$d" -u frr -g frr -f "$d/bgpd.conf" >"$d/bgpd.out" 2>&1 &
    for _ in $(seq 600); do [ -S "$d/bgpd.vty" ] && break; sleep 0.1; done
}
vty() { local d=$1; shift; vtysh --vty_socket "$d" "$@"; }

# Target FRR: the receiver of every run.
mkdir -p "$WORK/tgt"
cat >"$WORK/tgt/bgpd.conf" <<EOF
frr defaults traditional
router bgp 65001
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 shutdown
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.5 remote-as 65020
 neighbor 192.0.2.5 shutdown
 neighbor 192.0.2.5 timers connect 1
 neighbor 192.0.2.9 remote-as 65010
 neighbor 192.0.2.9 shutdown
 neighbor 192.0.2.9 timers connect 1
 address-family ipv4 vpn
  neighbor 192.0.2.1 activate
  neighbor 192.0.2.5 activate
  neighbor 192.0.2.9 activate
 exit-address-family
EOF
frr_start tgt "$WORK/tgt"

# Source FRR: originates the N routes.
mkdir -p "$WORK/src"
{
    cat <<EOF
frr defaults traditional
route-map SETRT permit 10
 set extcommunity rt 65000:1
router bgp 65010
 bgp router-id 192.0.2.9
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 192.0.2.10 remote-as 65001
 neighbor 192.0.2.10 passive
 neighbor 192.0.2.14 remote-as 65020
 address-family ipv4 vpn
  neighbor 192.0.2.10 activate
  neighbor 192.0.2.14 activate
EOF
    "$SPEAKER" frr-networks "$N"
    echo " exit-address-family"
} >"$WORK/src/bgpd.conf"
echo "starting FRR source with $N network statements..." >&2
frr_start src "$WORK/src"

# GoBGP: learns the routes from FRR source, passive towards the target.
mkdir -p "$WORK/gob"
cat >"$WORK/gob/gobgpd.toml" <<EOF
[global.config]
  as = 65020
  router-id = "192.0.2.5"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.13"
    peer-as = 65010
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.6"
    peer-as = 65001
  [neighbors.transport.config]
    passive-mode = true
  [neighbors.timers.config]
    idle-hold-time-after-reset = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
EOF
ip netns exec "${TAG}gob" gobgpd -f "$WORK/gob/gobgpd.toml" -p --pprof-disable -l warn \
    >"$WORK/gob/gobgpd.out" 2>&1 &

# Weft: exports the same routes, passive towards the target.
ip netns exec "${TAG}weft" "$SPEAKER" run 65000 192.0.2.1 192.0.2.2 65001 192.0.2.1 "$N" \
    >"$WORK/weft.out" 2>&1 &

echo "waiting for GoBGP to learn $N routes from FRR source..." >&2
gobgp_count() {
    ip netns exec "${TAG}gob" gobgp global rib -a vpnv4 summary 2>/dev/null |
        awk '/Destination/ {print $2; exit}' | tr -d ,
}
for _ in $(seq 1800); do
    c=$(gobgp_count || true)
    [ "${c:-0}" = "$N" ] && break
    sleep 1
done
[ "$(gobgp_count)" = "$N" ] || { echo "GoBGP holds $(gobgp_count) routes, not $N" >&2; exit 1; }

received() { # neighbor
    vty "$WORK/tgt" -c "show bgp ipv4 vpn summary json" 2>/dev/null |
        python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get('peers',{}).get('$1',{}).get('pfxRcd',0))" 2>/dev/null || echo 0
}

measure() { # neighbor -> seconds
    local nb=$1 t0 t1
    t0=$(date +%s.%N)
    vty "$WORK/tgt" -c "configure terminal" -c "router bgp 65001" -c "no neighbor $nb shutdown" >/dev/null
    while [ "$(received "$nb")" != "$N" ]; do
        sleep 0.05
        if [ "$(echo "$(date +%s.%N) - $t0 > 600" | bc)" = 1 ]; then echo "timeout" ; return; fi
    done
    t1=$(date +%s.%N)
    vty "$WORK/tgt" -c "configure terminal" -c "router bgp 65001" -c "neighbor $nb shutdown" >/dev/null
    # Let the target drop those routes before the next run.
    while [ "$(received "$nb")" != "0" ]; do sleep 0.2; done
    sleep 2
    echo "$t1 - $t0" | bc -l
}

declare -A RESULTS
for r in $(seq "$ROUNDS"); do
    for pair in "weft:192.0.2.1" "gobgp:192.0.2.5" "frr:192.0.2.9"; do
        name=${pair%%:*}; nb=${pair#*:}
        s=$(measure "$nb")
        echo "round $r: $name -> FRR: ${s}s" >&2
        RESULTS[$name]="${RESULTS[$name]:-} $s"
    done
done

best() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | head -1; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
W=$(median "${RESULTS[weft]}"); G=$(median "${RESULTS[gobgp]}"); F=$(median "${RESULTS[frr]}")
echo
echo "BGP VPNv4 advertisement: $N routes, median of $ROUNDS round(s), $(date -u +%Y-%m-%d)"
echo "FRR $(dpkg-query -W -f '${Version}' frr), GoBGP $(dpkg-query -W -f '${Version}' gobgpd), $(nproc) cores"
printf "%-16s %12s %14s\n" "sender -> FRR" "seconds" "routes/s"
for name in weft gobgp frr; do
    s=$(median "${RESULTS[$name]}")
    printf "%-16s %12.3f %14.0f\n" "$name" "$s" "$(echo "$N / $s" | bc -l)"
done
printf "weft / gobgp time: %.2f (goal < 1)\n" "$(echo "$W / $G" | bc -l)"
printf "weft / frr   time: %.2f (goal <= 1.5)\n" "$(echo "$W / $F" | bc -l)"
