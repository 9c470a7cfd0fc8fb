#!/usr/bin/env bash
# A Slurm cluster on this machine: munged, slurmctld and slurmd, all run as root, with their
# config, state and logs in one folder ($DLBENCH_SLURM_DIR, default /tmp/dlbench-slurm).
# dlbench's tests start it to run sweeps, preemption and requeue through real Slurm; you can
# use it to try `dlbench -m hydra/launcher=slurm ...` on a machine without a cluster.
#
#   apt-get install -y slurmctld slurmd slurm-client munge    # Debian 12 (the script needs them)
#   sudo scripts/slurm_cluster.sh start     # idempotent; waits until every node is idle
#   eval "$(scripts/slurm_cluster.sh env)"  # SLURM_CONF for sinfo, sbatch, squeue and dlbench
#   scripts/slurm_cluster.sh status         # exit 0 when the cluster answers and its nodes are up
#   sudo scripts/slurm_cluster.sh stop      # stops the daemons (the folder stays, for the logs)
#
# One node by default: this machine, with its CPUs (nproc) and 95% of its memory, in one
# partition, `debug`, the default. DLBENCH_SLURM_NODES=N (N > 1) makes N nodes instead, each in
# a network namespace of its own (dlbslurm0, dlbslurm1, ...: 10.78.0.1, .2, ... on a bridge,
# dlbslurm-br, where slurmctld listens on 10.78.0.254), each with all the CPUs and 1/N of the
# memory: a multi-node job runs one task per namespace, as on separate machines that share a
# file system.
#
# No accounting storage: sacct has nothing to say, and job states come from squeue. Ports 16817
# and 16818 (DLBENCH_SLURM_PORT and the next one) keep clear of a system Slurm. A requeued job
# may start again 6 s after it was requeued (cred_expire=5; Slurm's default is 120 s), and the
# scheduler looks at pending jobs every 2 s: quick enough for tests. `start` on a running
# cluster whose config is unchanged does nothing; parallel starts wait for each other.
set -euo pipefail

DIR=${DLBENCH_SLURM_DIR:-/tmp/dlbench-slurm}
PORT=${DLBENCH_SLURM_PORT:-16817}
NODES=${DLBENCH_SLURM_NODES:-1}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
BRIDGE=dlbslurm-br
export SLURM_CONF=$CONF

say() { echo "slurm_cluster: $*" >&2; }
die() {
    say "$*"
    exit 1
}

node_names() { # the nodes' names: this machine's, or one per namespace
    if ((NODES == 1)); then
        echo "$HOST"
    else
        for ((i = 0; i < NODES; i++)); do echo "dlbslurm$i"; done
    fi
}

alive() { # alive NAME: the daemon whose pid file is $DIR/NAME.pid is running
    [[ -f $DIR/$1.pid ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null
}

all_alive() {
    alive munged && alive slurmctld || return 1
    for name in $(node_names); do alive "slurmd-$name" || return 1; done
}

daemon() { # start a daemon that keeps neither the caller's output nor the start lock
    "$@" </dev/null >>"$DIR/daemons.out" 2>&1 9>&-
}

all_idle() { # every node is up and idle (or running jobs)
    local states
    states=$(sinfo --noheader --format=%T --Node 2>/dev/null) || return 1
    [[ $(grep -cE '^(idle|mixed|allocated)' <<<"$states") -eq $NODES ]]
}

config() { # the slurm.conf this machine gets
    local cpus mem_mb controller
    cpus=$(nproc)
    mem_mb=$(awk -v n="$NODES" '/^MemTotal:/ { print int($2 / 1024 * 0.95 / n) }' /proc/meminfo) # as free -m
    controller=$( ((NODES == 1)) && echo 127.0.0.1 || echo 10.78.0.254)
    cat <<EOF
# written by scripts/slurm_cluster.sh: a test cluster for dlbench
ClusterName=dlbench
SlurmctldHost=$HOST($controller)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=60
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
EOF
    local i=0
    for name in $(node_names); do
        local address=$( ((NODES == 1)) && echo 127.0.0.1 || echo "10.78.0.$((i + 1))")
        echo "NodeName=$name NodeAddr=$address CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        i=$((i + 1))
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
}

network_up() { # the nodes' namespaces on a bridge (several nodes only)
    ((NODES > 1)) || return 0
    command -v ip >/dev/null || die "ip is missing: apt-get install -y iproute2"
    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add 10.78.0.254/24 dev "$BRIDGE"
        ip link set "$BRIDGE" up
    }
    local i=0
    for name in $(node_names); do
        if ! ip netns list | grep -qw "$name"; then
            ip netns add "$name"
            ip link add "${name}h" type veth peer name "${name}n"
            ip link set "${name}h" master "$BRIDGE" up
            ip link set "${name}n" netns "$name"
            ip -n "$name" addr add "10.78.0.$((i + 1))/24" dev "${name}n"
            ip -n "$name" link set "${name}n" up
            ip -n "$name" link set lo up
        fi
        i=$((i + 1))
    done
}

network_down() {
    ((NODES > 1)) || return 0
    for name in $(node_names); do
        ip netns del "$name" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

start() {
    [[ $EUID -eq 0 ]] || die "start needs root (the daemons run as root)"
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null ||
            die "$tool is missing: apt-get install -y slurmctld slurmd slurm-client munge"
    done
    mkdir -p "$DIR"/{state,spool,munge}
    exec 9>"$DIR/lock" # one start at a time (parallel test workers)
    flock 9
    if all_alive && all_idle && [[ "$(config)" == "$(cat "$CONF" 2>/dev/null)" ]]; then
        say "already running ($CONF)"
        return 0
    fi
    stop_daemons
    network_up
    config >"$CONF"
    [[ -f $DIR/munge.key ]] || mungekey --create --keyfile="$DIR/munge.key" --bits=1024
    chmod 0400 "$DIR/munge.key"
    chmod 0700 "$DIR/munge"
    daemon munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/seed"
    daemon slurmctld -c -i # a clean start: no jobs left over from an earlier cluster
    for name in $(node_names); do
        mkdir -p "$DIR/spool/$name"
        if ((NODES == 1)); then
            daemon slurmd -c
        else # only the network is the namespace's: the file system (and cgroups) stay shared
            daemon nsenter --net="/run/netns/$name" slurmd -c -N "$name"
        fi
    done
    for _ in $(seq 60); do
        if all_idle; then
            say "running: $NODES node(s) idle ($(nproc) CPUs each), config $CONF"
            return 0
        fi
        for name in $(node_names); do # a node that registered before the controller was up
            scontrol update nodename="$name" state=resume 2>/dev/null || true
        done
        sleep 0.5
    done
    die "the nodes did not become idle in 30 s: see $DIR/slurmctld.log and $DIR/slurmd-*.log"
}

stop_daemons() { # SIGTERM to all of them, then SIGKILL to any left after 5 s
    local name pids=()
    for name in $(node_names | sed 's/^/slurmd-/') slurmctld munged; do
        alive "$name" && pids+=("$(cat "$DIR/$name.pid")")
    done
    ((${#pids[@]})) || return 0
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        local pid left=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        ((${#left[@]})) || return 0
        pids=("${left[@]}")
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
}

case ${1:-} in
start) start ;;
stop)
    stop_daemons
    network_down
    say "stopped"
    ;;
status)
    all_alive && all_idle || die "not running (or a node is down): $CONF"
    say "running: $NODES node(s), config $CONF"
    ;;
env) echo "export SLURM_CONF=$CONF" ;;
*) die "usage: $0 start|stop|status|env  (DLBENCH_SLURM_DIR, DLBENCH_SLURM_PORT, DLBENCH_SLURM_NODES)" ;;
esac
