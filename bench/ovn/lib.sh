# shellcheck shell=bash
# Copied from the team's shared OVN baseline harness (shared/bench/ovn, 2026-11-22);
# kept here so the benchmark runs from a clean clone.
# Shared helpers for the OVN control-plane baseline scripts.
# Sourced by northd_scale.sh and trace_example.sh; not meant to be run directly.
#
# Everything lives in one scratch directory ($OVNB_DIR): DB files, unix
# sockets, unixctl sockets, pid files and logs.  Nothing listens on TCP.
# Daemons are stopped only through the pid files written in that directory.

OVN_SCHEMA_DIR=${OVN_SCHEMA_DIR:-/usr/share/ovn}
OVNB_DIR=${OVNB_DIR:-}
OVNB_KEEP=${KEEP:-0}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Wall clock in seconds with microsecond resolution (bash >= 5).
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

ovnb_require_tools() {
    local t
    for t in ovsdb-tool ovsdb-server ovn-northd ovn-nbctl ovn-sbctl ovn-appctl; do
        command -v "$t" >/dev/null 2>&1 || die "missing $t (apt-get install ovn-central ovn-host openvswitch-switch)"
    done
    [[ -r $OVN_SCHEMA_DIR/ovn-nb.ovsschema && -r $OVN_SCHEMA_DIR/ovn-sb.ovsschema ]] \
        || die "OVN schemas not found in $OVN_SCHEMA_DIR"
}

# Create the scratch dir (unless OVNB_DIR was given) and export DB remotes.
ovnb_init_dir() {
    if [[ -z $OVNB_DIR ]]; then
        OVNB_DIR=$(mktemp -d /tmp/ovnbench.XXXXXX)
    else
        mkdir -p "$OVNB_DIR"
        [[ -z $(ls -A "$OVNB_DIR") ]] || die "OVNB_DIR $OVNB_DIR is not empty"
    fi
    export OVN_NB_DB="unix:$OVNB_DIR/nb.sock"
    export OVN_SB_DB="unix:$OVNB_DIR/sb.sock"
    # Keep ovn-*ctl / ovs-appctl from looking at system run dirs.
    export OVS_RUNDIR="$OVNB_DIR" OVN_RUNDIR="$OVNB_DIR"
}

# $1 = name (nb|sb), $2 = schema file
_ovnb_start_db() {
    local name=$1 schema=$2
    ovsdb-tool create "$OVNB_DIR/$name.db" "$schema"
    ovsdb-server --detach --no-chdir -vconsole:off \
        --pidfile="$OVNB_DIR/$name.pid" \
        --log-file="$OVNB_DIR/$name.log" \
        --unixctl="$OVNB_DIR/$name.ctl" \
        --remote="punix:$OVNB_DIR/$name.sock" \
        "$OVNB_DIR/$name.db"
}

# Start NB + SB ovsdb-server and ovn-northd.  NORTHD_THREADS (optional)
# sets --n-threads; NORTHD_PAUSED=1 starts northd with --dry-run (paused).
ovnb_start_all() {
    _ovnb_start_db nb "$OVN_SCHEMA_DIR/ovn-nb.ovsschema"
    _ovnb_start_db sb "$OVN_SCHEMA_DIR/ovn-sb.ovsschema"
    local extra=()
    [[ -n ${NORTHD_THREADS:-} ]] && extra+=("--n-threads=$NORTHD_THREADS")
    [[ ${NORTHD_PAUSED:-0} == 1 ]] && extra+=(--dry-run)
    ovn-northd --detach --no-chdir -vconsole:off \
        --pidfile="$OVNB_DIR/northd.pid" \
        --log-file="$OVNB_DIR/northd.log" \
        --unixctl="$OVNB_DIR/northd.ctl" \
        --ovnnb-db="$OVN_NB_DB" --ovnsb-db="$OVN_SB_DB" \
        "${extra[@]}"
    ovn-nbctl --no-wait init
    log "daemons up in $OVNB_DIR (nb=$(ovnb_pid nb) sb=$(ovnb_pid sb) northd=$(ovnb_pid northd))"
}

ovnb_pid() { cat "$OVNB_DIR/$1.pid" 2>/dev/null || true; }

northd_ctl() { ovn-appctl -t "$OVNB_DIR/northd.ctl" "$@"; }

# True while $1 is running; a zombie (exited, not yet reaped by our
# parent/init) counts as gone.
_ovnb_alive() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# Stop one daemon by its pid file; checks the command name first so that a
# recycled pid is never signalled.  $1 = pidfile basename, $2 = expected comm
_ovnb_stop_one() {
    local name=$1 comm=$2 pid i
    pid=$(ovnb_pid "$name")
    [[ -n $pid ]] || return 0
    _ovnb_alive "$pid" || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        _ovnb_alive "$pid" || return 0
        sleep 0.05
    done
    log "$name (pid $pid) did not exit on TERM, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
}

ovnb_stop_all() {
    [[ -n $OVNB_DIR && -d $OVNB_DIR ]] || return 0
    _ovnb_stop_one northd ovn-northd
    _ovnb_stop_one sb ovsdb-server
    _ovnb_stop_one nb ovsdb-server
    if [[ $OVNB_KEEP == 1 ]]; then
        log "kept $OVNB_DIR (logs, dbs)"
    else
        rm -rf -- "$OVNB_DIR"
    fi
}

# ---------------------------------------------------------------------------
# Batched ovn-nbctl: commands are accumulated and sent about CHUNK at a time,
# each batch as one ovn-nbctl invocation (= one OVSDB transaction), --no-wait.
# ---------------------------------------------------------------------------
NB_BATCH=()
NB_BATCH_N=0
NB_CHUNK=${CHUNK:-2000}
NB_INVOCATIONS=0

# Append one command to the batch (no flush).
nb_add() {
    if ((NB_BATCH_N > 0)); then NB_BATCH+=(--); fi
    NB_BATCH+=("$@")
    NB_BATCH_N=$((NB_BATCH_N + 1))
}
# Append and flush when the batch is full.
nb_cmd() {
    nb_add "$@"
    if ((NB_BATCH_N >= NB_CHUNK)); then nb_flush; fi
}
nb_flush_if_full() { if ((NB_BATCH_N >= NB_CHUNK)); then nb_flush; fi; }

nb_flush() {
    if ((NB_BATCH_N > 0)); then
        # -vtimeval:console:off hides ovn-nbctl's own "Unreasonably long poll
        # interval" warnings for big batches; real errors still go to stderr.
        ovn-nbctl -vtimeval:console:off --no-wait "${NB_BATCH[@]}" >/dev/null
        NB_INVOCATIONS=$((NB_INVOCATIONS + 1))
        NB_BATCH=()
        NB_BATCH_N=0
    fi
}

# Addressing: switch i (1-based) owns 10.(i/256).(i%256).0/24.
# Router attachments use .1-.9, VM ports use .(10+j) for j = 1..P.
# (printf -v into the named variable: no subshell per port.)
sw_prefix() { printf -v "$1" '10.%d.%d' $(($2 / 256)) $(($2 % 256)); }
lsp_mac() { printf -v "$1" '0a:00:%02x:%02x:%02x:%02x' $(($2 / 256)) $(($2 % 256)) $(($3 / 256)) $(($3 % 256)); }
lrp_mac() { printf -v "$1" '0a:01:%02x:%02x:%02x:%02x' $(($2 / 256)) $(($2 % 256)) $(($3 / 256)) $(($3 % 256)); }

# Build the topology.  Globals: S P R K, PORT_SECURITY (0/1), LOAD_MODE.
#  - S switches ls1..lsS, each with P VM ports lsI-pJ (static "MAC IP")
#  - R routers lr1..lrR; router r attaches switches ((r-1)*K + k - 1) % S + 1,
#    k = 1..K (round-robin; R*K > S gives switches with several routers).
#    Attachment = lrp lrR-lsS (MAC, 10.x.y.SLOT/24) + router-type lsp lsS-lrR.
#  - port group pg_all containing every VM port, with ACLs:
#      from-lport 1002 inport==@pg_all && ip4                          allow-related
#      to-lport   1002 outport==@pg_all && ip4 && ip4.src==$pg_all_ip4  allow-related
#      from-lport 1001 inport==@pg_all && ip                            drop
#      to-lport   1001 outport==@pg_all && ip                           drop
#
# LOAD_MODE=db (default): VM ports are created with ovn-nbctl's generic
#   database commands (create Logical_Switch_Port / create Logical_Switch
#   ports=[...] / add Port_Group pg_all ports ...), referencing rows by @id
#   inside each transaction.  Same NB content as LOAD_MODE=lsp, but avoids
#   ovn-nbctl's by-name port lookups, which are O(#ports) per command and
#   make the client, not the DB, dominate load time at 20k ports.
# LOAD_MODE=lsp: the high-level commands (ls-add, lsp-add, lsp-set-addresses,
#   pg-add pg_all <all port names>).
ovnb_build_topology() {
    local i j r k s slot pfx mac ip lsp lrp id mode=${LOAD_MODE:-db}
    local -a ids
    ((P >= 1 && P <= 240)) || die "P must be 1..240 (one /24 per switch)"
    ((S >= 1 && S <= 65535)) || die "S must be 1..65535"
    [[ $mode == db || $mode == lsp ]] || die "LOAD_MODE must be db or lsp"
    local -A nrtr=()
    local pg_uuid=""

    if [[ $mode == db ]]; then
        pg_uuid=$(ovn-nbctl --no-wait create Port_Group name=pg_all)
        NB_INVOCATIONS=$((NB_INVOCATIONS + 1))
    fi

    for ((i = 1; i <= S; i++)); do
        sw_prefix pfx "$i"
        ids=()
        if [[ $mode == lsp ]]; then nb_add ls-add "ls$i"; fi
        for ((j = 1; j <= P; j++)); do
            lsp="ls$i-p$j"
            lsp_mac mac "$i" "$j"
            ip="$pfx.$((10 + j))"
            if [[ $mode == db ]]; then
                id="@p${i}_$j"
                ids+=("$id")
                if [[ ${PORT_SECURITY:-0} == 1 ]]; then
                    nb_add "--id=$id" create Logical_Switch_Port "name=$lsp" \
                        "addresses=\"$mac $ip\"" "port_security=\"$mac $ip\""
                else
                    nb_add "--id=$id" create Logical_Switch_Port "name=$lsp" \
                        "addresses=\"$mac $ip\""
                fi
            else
                nb_add lsp-add "ls$i" "$lsp"
                nb_add lsp-set-addresses "$lsp" "$mac $ip"
                if [[ ${PORT_SECURITY:-0} == 1 ]]; then
                    nb_add lsp-set-port-security "$lsp" "$mac $ip"
                fi
            fi
        done
        if [[ $mode == db ]]; then
            nb_add create Logical_Switch "name=ls$i" "ports=[$(IFS=,; echo "${ids[*]}")]"
            nb_add add Port_Group "$pg_uuid" ports "${ids[@]}"
        fi
        # a switch and its ports always go in the same transaction
        nb_flush_if_full
    done

    for ((r = 1; r <= R; r++)); do
        nb_cmd lr-add "lr$r"
        for ((k = 1; k <= K; k++)); do
            s=$(((((r - 1) * K + k - 1) % S) + 1))
            slot=$((${nrtr[$s]:-0} + 1))
            ((slot <= 9)) || die "switch ls$s would get more than 9 routers (reduce R*K/S)"
            nrtr[$s]=$slot
            lrp="lr$r-ls$s"
            lsp="ls$s-lr$r"
            lrp_mac mac "$s" "$r"
            sw_prefix pfx "$s"
            nb_cmd lrp-add "lr$r" "$lrp" "$mac" "$pfx.$slot/24"
            nb_cmd lsp-add "ls$s" "$lsp"
            nb_cmd lsp-set-type "$lsp" router
            nb_cmd lsp-set-addresses "$lsp" router
            nb_cmd lsp-set-options "$lsp" "router-port=$lrp"
        done
    done
    nb_flush

    if [[ $mode == lsp ]]; then
        # One command; every name is resolved by ovn-nbctl.
        local ports=()
        for ((i = 1; i <= S; i++)); do
            for ((j = 1; j <= P; j++)); do ports+=("ls$i-p$j"); done
        done
        ovn-nbctl -vtimeval:console:off --no-wait pg-add pg_all "${ports[@]}" >/dev/null
        NB_INVOCATIONS=$((NB_INVOCATIONS + 1))
    fi
    # shellcheck disable=SC2016
    ovn-nbctl --no-wait \
        acl-add pg_all from-lport 1002 'inport == @pg_all && ip4' allow-related -- \
        acl-add pg_all to-lport 1002 'outport == @pg_all && ip4 && ip4.src == $pg_all_ip4' allow-related -- \
        acl-add pg_all from-lport 1001 'inport == @pg_all && ip' drop -- \
        acl-add pg_all to-lport 1001 'outport == @pg_all && ip' drop
    NB_INVOCATIONS=$((NB_INVOCATIONS + 1))
}
