#!/usr/bin/env bash
# A one-node Slurm cluster on this machine: munged, slurmctld and slurmd, all run as root, with
# their config, state and logs in one folder ($DLBENCH_SLURM_DIR, default /tmp/dlbench-slurm).
# dlbench's tests start it to run sweeps, preemption and requeue through real Slurm; you can
# use it to try `dlbench -m hydra/launcher=slurm ...` on a machine without a cluster.
#
#   apt-get install -y slurmctld slurmd slurm-client munge    # Debian 12 (the script needs them)
#   sudo scripts/slurm_cluster.sh start     # idempotent; waits until the node is idle
#   eval "$(scripts/slurm_cluster.sh env)"  # SLURM_CONF for sinfo, sbatch, squeue and dlbench
#   scripts/slurm_cluster.sh status         # exit 0 when the cluster answers and the node is up
#   sudo scripts/slurm_cluster.sh stop      # stops the daemons (the folder stays, for the logs)
#
# The node has this machine's CPUs (nproc) and 95% of its memory (free); one partition,
# `debug`, is the default. No accounting storage: sacct has nothing to say, and job states come
# from squeue. Ports 16817/16818 (DLBENCH_SLURM_PORT and the next one) keep clear of a system Slurm.
# A requeued job may start again 11 s after it was requeued (cred_expire=10; Slurm's default
# is 120 s), and the scheduler looks at pending jobs every 2 s: quick enough for tests.
# `start` on a running cluster whose config is unchanged does nothing; parallel starts wait
# for each other.
set -euo pipefail

DIR=${DLBENCH_SLURM_DIR:-/tmp/dlbench-slurm}
PORT=${DLBENCH_SLURM_PORT:-16817}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "slurm_cluster: $*" >&2; }
die() {
    say "$*"
    exit 1
}

alive() { # alive NAME: the daemon whose pid file is $DIR/NAME.pid is running
    [[ -f $DIR/$1.pid ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null
}

daemon() { # start a daemon that keeps neither the caller's output nor the start lock
    "$@" </dev/null >>"$DIR/daemons.out" 2>&1 9>&-
}

node_state() { sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1; }

config() { # the slurm.conf this machine gets
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(free -m | awk '/^Mem:/ { print int($2 * 0.95) }')
    cat <<EOF
# written by scripts/slurm_cluster.sh: a one-node cluster for dlbench's tests
ClusterName=dlbench
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
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
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
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
    if alive munged && alive slurmctld && alive slurmd && [[ $(node_state) == idle* || $(node_state) == mix* ]] &&
        [[ "$(config)" == "$(cat "$CONF")" ]]; then
        say "already running ($CONF)"
        return 0
    fi
    stop_daemons
    config >"$CONF"
    [[ -f $DIR/munge.key ]] || mungekey --create --keyfile="$DIR/munge.key" --bits=1024
    chmod 0400 "$DIR/munge.key"
    chmod 0700 "$DIR/munge"
    daemon munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/seed"
    daemon slurmctld -c -i # a clean start: no jobs left over from an earlier cluster
    daemon slurmd -c
    for _ in $(seq 60); do
        case $(node_state) in
        idle*)
            say "running: node $NODE idle ($(nproc) CPUs), config $CONF"
            return 0
            ;;
        down* | drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "the node did not become idle in 30 s: see $DIR/slurmctld.log and $DIR/slurmd.log"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do
        alive "$name" || continue
        pid=$(cat "$DIR/$name.pid")
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}

case ${1:-} in
start) start ;;
stop)
    stop_daemons
    say "stopped"
    ;;
status)
    state=$(node_state)
    alive munged && alive slurmctld && alive slurmd && [[ -n $state ]] || die "not running"
    say "running: node $NODE $state, config $CONF"
    ;;
env) echo "export SLURM_CONF=$CONF" ;;
*) die "usage: $0 start|stop|status|env" ;;
esac
