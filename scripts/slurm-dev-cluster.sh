#!/bin/sh
# A real single-node Slurm cluster on this host, for the tests and for trying
# `launcher = slurm` on a laptop: Debian's slurm-wlm and munge (installed by
# scripts/install-system-deps.sh), slurmctld + slurmd with a generated config, private
# state, spool and log directories under DIR, and ports of their own (free ones, so
# several clusters can run side by side and none collides with a site's Slurm).
#
#   scripts/slurm-dev-cluster.sh start DIR    # prints: export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-dev-cluster.sh status DIR   # sinfo of that cluster; exit 1 if it is down
#   scripts/slurm-dev-cluster.sh stop DIR     # cancels its jobs, stops its daemons
#
# Needs root (slurmd runs jobs as their users).  Each cluster has its own munged (socket,
# pid and log files under DIR, the host's /etc/munge/munge.key), which `stop` stops with
# the rest.  The node is this host under its own name, reached at 127.0.0.1.
set -eu

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
conf="$dir/slurm.conf"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds
    limit=$1; shift
    tries=$((limit * 10))
    while ! "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

node_idle() { [ "$(SLURM_CONF=$conf sinfo -h -o %T 2>/dev/null)" = "idle" ]; }

start_munge() {  # this cluster's own munged
    [ -r /etc/munge/munge.key ] || { echo "$0: no /etc/munge/munge.key (install munge)" >&2; exit 1; }
    munged --force --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed" 2>/dev/null
    wait_for 10 munge --socket="$dir/munge.socket" -n || {
        echo "$0: munged did not start; see $dir/log/munged.log" >&2; exit 1; }
}

case "$action" in
start)
    for program in slurmctld slurmd sinfo munged; do
        command -v "$program" >/dev/null 2>&1 || {
            echo "$0: $program not found (bash scripts/install-system-deps.sh installs slurm-wlm and munge)" >&2
            exit 1; }
    done
    [ "$(id -u)" = "0" ] || { echo "$0: run as root (slurmd starts jobs as their users)" >&2; exit 1; }
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    dir=$(cd "$dir" && pwd)
    conf="$dir/slurm.conf"
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    cat >"$conf" <<EOF
ClusterName=wk$(date +%s)$$
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
EnforcePartLimits=ALL
KillWait=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    start_munge
    slurmctld -f "$conf"
    slurmd -f "$conf"
    if ! wait_for 30 node_idle; then
        echo "$0: the node did not become idle; logs in $dir/log" >&2
        tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
        exit 1
    fi
    echo "export SLURM_CONF=$conf"
    ;;
status)
    [ -f "$conf" ] || { echo "$0: no cluster in $dir" >&2; exit 1; }
    SLURM_CONF=$conf sinfo
    ;;
stop)
    [ -f "$conf" ] || exit 0
    SLURM_CONF=$conf scancel --full --quiet --partition debug 2>/dev/null || true
    for daemon in slurmd slurmctld munged; do
        pidfile="$dir/$daemon.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        wait_for 10 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    ;;
*)
    usage
    ;;
esac
