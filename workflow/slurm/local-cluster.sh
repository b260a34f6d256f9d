#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, with job accounting, for checking the pipeline's
# SLURM profile against a running scheduler (docs/cluster.md, tests/test_slurm.py).
#
#   workflow/slurm/local-cluster.sh up       # install (first time) and start everything
#   workflow/slurm/local-cluster.sh status   # what runs, sinfo, the accounting association
#   workflow/slurm/local-cluster.sh down     # cancel jobs, stop every daemon, check none is left
#
# Debian's packages (slurm-wlm 22.05, slurmdbd, munge, mariadb-server), installed by `up` when
# missing and started by hand as root, without systemd: munged, mariadbd, slurmdbd, slurmctld,
# slurmd. The node has the machine's CPUs, its memory less 2 GB, and one GPU GRES *without a
# device* (gres.conf File=/dev/null), so that sbatch accepts and schedules GPU requests; nothing
# runs on a GPU. Two partitions on the node: `cpu` (default; its QOS refuses GPU requests) and
# `gpu`. One account, `advcg`, for the user running `up` (root) and for $ADVCG_SLURM_USERS
# (space-separated). Accounting is enforced (a job with another account is refused), as on most
# clusters. Configuration in /etc/slurm and /etc/munge, logs in /var/log/slurm and
# /var/log/mysql, the accounting database in /var/lib/mysql (kept by `down`).
set -euo pipefail

CLUSTER=advcg-local
ACCOUNT=advcg
NODE=$(hostname -s)
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS_FILE=/etc/slurm/.advcg-db-password
MYSQL_SOCKET=/run/mysqld/mysqld.sock
# daemons in start order; `down` stops them in reverse
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

die() { echo "local-cluster: error: $*" >&2; exit 1; }
say() { echo "local-cluster: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds, or fail after SECONDS
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what: not ready after ${seconds} s (see /var/log/slurm, /var/log/mysql)"
        sleep 1
    done
}

pidfile() {
    case $1 in
        munged) echo /run/munge/munged.pid ;;
        mariadbd) echo /run/mysqld/mysqld.pid ;;
        *) echo "/run/slurm/$1.pid" ;;
    esac
}

# running NAME: the daemon's pid file names a live process of that name
running() {
    local file pid
    file=$(pidfile "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ -d /proc/$pid ]] && grep -q "$1" "/proc/$pid/comm" 2>/dev/null
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]} (apt-get)"
    # no service starts during installation: this script starts the daemons itself
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
}

write_config() {
    local cpus memory
    cpus=$(nproc)
    # leave 2 GB of the machine's memory to the system
    memory=$(awk '/MemTotal/ {printf "%d", $2 / 1024 - 2048}' /proc/meminfo)
    mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/slurm
    chown slurm:slurm /var/log/slurm /var/lib/slurm/slurmctld /run/slurm

    cat >/etc/slurm/slurm.conf <<EOF
# written by workflow/slurm/local-cluster.sh: one-node cluster for testing advcg's SLURM profile
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in a container: processes tracked through /proc, CPUs bound by sched_setaffinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
MinJobAge=300
# a killed job is not requeued by SLURM: Snakemake sees it fail and retries or reports it
JobRequeue=0
KillWait=10
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
# the job comment (the executor writes rule and wildcards there) in sacct
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$NODE CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
# as on a real cluster, a GPU request in the CPU partition is refused (its QOS allows no GPU)
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP QOS=cpuonly
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # a GPU GRES for scheduling only: no device behind it
    cat >/etc/slurm/gres.conf <<EOF
# written by workflow/slurm/local-cluster.sh: a GPU for the scheduler only (no device)
NodeName=$NODE Name=gpu Count=1 File=/dev/null
EOF
    if [[ ! -s $DB_PASS_FILE ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DB_PASS_FILE")
    fi
    (
        umask 077
        cat >/etc/slurm/slurmdbd.conf <<EOF
# written by workflow/slurm/local-cluster.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$(<"$DB_PASS_FILE")
EOF
    )
    chown slurm:slurm /etc/slurm/slurmdbd.conf
}

start_munge() {
    running munged && return 0
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating the munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 30 munged munge -n
}

start_mariadb() {
    running mariadbd && return 0
    mkdir -p /run/mysqld /var/log/mysql
    chown mysql:mysql /run/mysqld /var/log/mysql
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        say "initialising the database directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    # started detached; its own log in /var/log/mysql
    setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid --socket="$MYSQL_SOCKET" \
        --bind-address=127.0.0.1 --log-error=/var/log/mysql/error.log \
        --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb mariadb-admin --socket="$MYSQL_SOCKET" ping
    # the accounting database and its user (root connects by unix socket)
    mariadb --socket="$MYSQL_SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$(<"$DB_PASS_FILE")';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$(<"$DB_PASS_FILE")';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF
}

start_slurm() {
    if ! running slurmdbd; then
        /usr/sbin/slurmdbd
        wait_for 60 slurmdbd sacctmgr -n show cluster
    fi
    # the cluster, the CPU partition's QOS (its limit below), the account and its users: before
    # slurmctld, which registers with slurmdbd
    if [[ -z $(sacctmgr -n -P show cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P show qos cpuonly format=name) ]]; then
        sacctmgr -i add qos cpuonly Flags=DenyOnLimit >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P show account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="advcg tests" organization=advcg >/dev/null
    fi
    local user
    for user in "$(id -un)" ${ADVCG_SLURM_USERS:-}; do
        if [[ -z $(sacctmgr -n -P show assoc where user="$user" account="$ACCOUNT" format=user) ]]; then
            sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" >/dev/null
        fi
    done
    if ! running slurmctld; then
        /usr/sbin/slurmctld
        wait_for 60 slurmctld scontrol ping
    fi
    if ! running slurmd; then
        /usr/sbin/slurmd
    fi
    # the QOS's GPU limit: the accounting database knows gres/gpu only once slurmctld has
    # registered it (AccountingStorageTRES)
    if [[ $(sacctmgr -n -P show qos cpuonly format=maxtres) != "gres/gpu=0" ]]; then
        wait_for 60 "gres/gpu in the accounting database" gpu_tres_known
        sacctmgr -i modify qos where name=cpuonly set MaxTRESPerJob=gres/gpu=0 >/dev/null
    fi
    # the node may come back as DOWN from a previous run's saved state
    wait_for 60 "node $NODE" node_responds
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 60 "node $NODE idle" node_idle
}

gpu_tres_known() { sacctmgr -n -P show tres type=gres name=gpu format=name | grep -q gpu; }
node_responds() { sinfo -h -n "$NODE" -o %T | grep -qvE '^(unknown|not_responding)'; }
node_idle() { sinfo -h -n "$NODE" -o %T | grep -qE '^(idle|mixed|allocated)$'; }

up() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts system daemons)"
    install_packages
    write_config
    start_munge
    start_mariadb
    start_slurm
    say "up: cluster $CLUSTER, node $NODE, partitions cpu (default) and gpu, account $ACCOUNT"
    sinfo
}

# stop NAME: SIGTERM, then wait up to 60 s for the process to end
stop() {
    local name=$1 file pid
    file=$(pidfile "$name")
    if ! running "$name"; then
        rm -f "$file"
        return 0
    fi
    pid=$(<"$file")
    say "stopping $name (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while [[ -d /proc/$pid ]]; do
        ((SECONDS < deadline)) || die "$name (pid $pid) did not stop within 60 s"
        sleep 1
    done
    rm -f "$file"
}

# processes (pid and name) of the daemons and job steps that `down` must leave stopped
# shellcheck disable=SC2009  # one ps for all names (pgrep patterns stop at 15 characters)
leftovers() { ps -eo pid=,comm= | grep -E ' (slurm[a-z]*|mariadbd|mysqld|mysqld_safe|munged)$' || true; }

down() {
    [[ $(id -u) == 0 ]] || die "run as root"
    if running slurmctld && [[ -n $(squeue -h -o %i) ]]; then
        say "cancelling the jobs still queued or running"
        squeue -h -o %i | xargs -r scancel --full --signal=KILL || true
        squeue -h -o %i | xargs -r scancel || true
        local deadline=$((SECONDS + 60))
        while [[ -n $(squeue -h -o %i) ]] && ((SECONDS < deadline)); do sleep 1; done
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop "${DAEMONS[i]}"
    done
    local left
    left=$(leftovers)
    [[ -z $left ]] || die "still running after down: $(echo "$left" | tr -s ' \n' ' ')"
    say "down: no slurm, munge or mariadb process left"
}

status() {
    local name state=0
    for name in "${DAEMONS[@]}"; do
        if running "$name"; then
            echo "$name: running (pid $(<"$(pidfile "$name")"))"
        else
            echo "$name: stopped"
            state=1
        fi
    done
    if ((state == 0)); then
        sinfo
        sacctmgr -n -P show assoc where account="$ACCOUNT" format=cluster,account,user
    fi
    return "$state"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
