#!/usr/bin/env bash
# A private single-node SLURM cluster on this machine, reached over SSH, for the tests marked `cluster`
# (tests/test_cluster.py) and the commands of docs/cluster.md.
#
#   bash .ci/cluster.sh start    install slurm-wlm, munge, openssh-server if missing (apt-get, needs root),
#                                then start munged, slurmctld, slurmd and an sshd on 127.0.0.1:$CLUSTER_PORT
#   bash .ci/cluster.sh status   what runs; exit 0 when sbatch works through ssh, else 1
#   bash .ci/cluster.sh stop     stop the daemons this script started (by their pid files)
#
# Everything lives in $CLUSTER_DIR (default /tmp/irspec-cluster): slurm.conf, the munge key, the ssh host
# key and the test's client key (id_ed25519), known_hosts, logs, pid files, and cluster.env, which the
# tests and the docs read:
#   CLUSTER_HOST CLUSTER_PORT CLUSTER_USER CLUSTER_KEY CLUSTER_KNOWN_HOSTS CLUSTER_WORKDIR CLUSTER_PARTITION
#   CLUSTER_JOBCOMP (SLURM's job-completion records: there is no slurmdbd, so no sacct)
# Remote working directory of the AiiDA Computer: $CLUSTER_WORKDIR (default /tmp/aiida-cluster-work).
# Starting again when everything runs does nothing; `start` prints how long the packages and the daemons took.
set -euo pipefail

CLUSTER_DIR=${CLUSTER_DIR:-/tmp/irspec-cluster}
CLUSTER_PORT=${CLUSTER_PORT:-2222}
CLUSTER_WORKDIR=${CLUSTER_WORKDIR:-/tmp/aiida-cluster-work}
PARTITION=debug
ENV_FILE=$CLUSTER_DIR/cluster.env
SSH_OPTS=(-p "$CLUSTER_PORT" -i "$CLUSTER_DIR/id_ed25519" -o UserKnownHostsFile="$CLUSTER_DIR/known_hosts"
          -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5)

die() { echo "cluster.sh: $*" >&2; exit 1; }

alive() {  # alive PIDFILE: the process of the pid file runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${seconds} s (logs in $CLUSTER_DIR/log)"
        sleep 0.2
    done
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    command -v ssh >/dev/null || missing+=(openssh-client)
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root (apt-get)"
    echo "cluster.sh: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq >/dev/null
    # policy-rc.d 101: the packages' maintainer scripts must not start services (there is no systemd anyway)
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        ours=1
    fi
    timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        ((ours)) && rm -f "$policy"
        die "apt-get install ${missing[*]} failed"
    }
    ((ours)) && rm -f "$policy"
    return 0
}

write_config() {
    mkdir -p "$CLUSTER_DIR"/{log,spool/ctld,spool/d,run} "$CLUSTER_WORKDIR"
    chmod 700 "$CLUSTER_DIR"
    local cpus memory
    cpus=$(nproc --all)
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # MB, some left for the OS
    cat >"$CLUSTER_DIR/slurm.conf" <<EOF
ClusterName=irspec
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$CLUSTER_DIR/spool/ctld
SlurmdSpoolDir=$CLUSTER_DIR/spool/d
SlurmctldPidFile=$CLUSTER_DIR/run/slurmctld.pid
SlurmdPidFile=$CLUSTER_DIR/run/slurmd.pid
SlurmctldLogFile=$CLUSTER_DIR/log/slurmctld.log
SlurmdLogFile=$CLUSTER_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
JobCompType=jobcomp/filetxt
JobCompLoc=$CLUSTER_DIR/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=10
KillWait=2
OverTimeLimit=0
InactiveLimit=0
MinJobAge=300
NodeName=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # The SLURM commands (sbatch, squeue, scancel over ssh too) read /etc/slurm/slurm.conf.
    mkdir -p /etc/slurm
    if [[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
        grep -q '^ClusterName=irspec$' /etc/slurm/slurm.conf || die "/etc/slurm/slurm.conf exists and is not ours"
    fi
    ln -sfn "$CLUSTER_DIR/slurm.conf" /etc/slurm/slurm.conf

    # munge: its key, run directory and daemon as user munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    chmod 755 /run/munge

    # ssh: a host key and a client key of the test's own, root login by that key only
    [[ -s $CLUSTER_DIR/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$CLUSTER_DIR/ssh_host_ed25519_key"
    [[ -s $CLUSTER_DIR/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C irspec-cluster-test -f "$CLUSTER_DIR/id_ed25519"
    cp "$CLUSTER_DIR/id_ed25519.pub" "$CLUSTER_DIR/authorized_keys"
    chmod 600 "$CLUSTER_DIR/authorized_keys"
    cat >"$CLUSTER_DIR/sshd_config" <<EOF
Port $CLUSTER_PORT
ListenAddress 127.0.0.1
HostKey $CLUSTER_DIR/ssh_host_ed25519_key
PidFile $CLUSTER_DIR/run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $CLUSTER_DIR/authorized_keys
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
EOF
    # known_hosts for 127.0.0.1 and [127.0.0.1]:PORT from the host key (paramiko refuses unknown hosts)
    local key
    key=$(cut -d' ' -f1,2 "$CLUSTER_DIR/ssh_host_ed25519_key.pub")
    printf '[127.0.0.1]:%s %s\n' "$CLUSTER_PORT" "$key" >"$CLUSTER_DIR/known_hosts"
    mkdir -p "$HOME/.ssh"
    chmod 700 "$HOME/.ssh"
    touch "$HOME/.ssh/known_hosts"
    ssh-keygen -R "[127.0.0.1]:$CLUSTER_PORT" -f "$HOME/.ssh/known_hosts" >/dev/null 2>&1 || true
    cat "$CLUSTER_DIR/known_hosts" >>"$HOME/.ssh/known_hosts"
    rm -f "$HOME/.ssh/known_hosts.old"

    cat >"$ENV_FILE" <<EOF
CLUSTER_HOST=127.0.0.1
CLUSTER_PORT=$CLUSTER_PORT
CLUSTER_USER=$(id -un)
CLUSTER_KEY=$CLUSTER_DIR/id_ed25519
CLUSTER_KNOWN_HOSTS=$CLUSTER_DIR/known_hosts
CLUSTER_WORKDIR=$CLUSTER_WORKDIR
CLUSTER_PARTITION=$PARTITION
CLUSTER_JOBCOMP=$CLUSTER_DIR/log/jobcomp.txt
EOF
}

node_idle() {
    sinfo -h -N -o '%t' | grep -qE '^(idle|mix|alloc)'
}

sbatch_over_ssh() {  # a one-second job, submitted through ssh, must finish
    local id
    id=$(ssh "${SSH_OPTS[@]}" "$(id -un)@127.0.0.1" \
        "sbatch --parsable --time=1 -o /dev/null --wrap 'hostname'") || return 1
    local deadline=$((SECONDS + 30))
    while squeue -h -j "$id" 2>/dev/null | grep -q .; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root: the daemons run as root (munged as user munge)"
    local t0=$SECONDS t_packages
    install_packages
    t_packages=$((SECONDS - t0))
    local t1=$SECONDS
    write_config
    if ! alive /run/munge/munged.pid; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    fi
    wait_for 20 munged munge -n
    alive "$CLUSTER_DIR/run/slurmctld.pid" || slurmctld
    wait_for 30 slurmctld scontrol ping
    alive "$CLUSTER_DIR/run/slurmd.pid" || slurmd
    wait_for 30 "the node" node_idle
    # a node left DOWN by an earlier run comes back (ReturnToService=2 does this on registration too)
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    if ! alive "$CLUSTER_DIR/run/sshd.pid"; then
        mkdir -p /run/sshd
        /usr/sbin/sshd -f "$CLUSTER_DIR/sshd_config" -E "$CLUSTER_DIR/log/sshd.log"
    fi
    wait_for 20 sshd ssh "${SSH_OPTS[@]}" "$(id -un)@127.0.0.1" true
    wait_for 40 "a job submitted with sbatch through ssh" sbatch_over_ssh
    echo "cluster.sh: up: packages ${t_packages} s, daemons $((SECONDS - t1)) s (total $((SECONDS - t0)) s)"
    echo "cluster.sh: ssh -p $CLUSTER_PORT -i $CLUSTER_DIR/id_ed25519 $(id -un)@127.0.0.1; settings in $ENV_FILE:"
    cat "$ENV_FILE"
}

stop_one() {  # stop_one NAME PIDFILE
    local pid
    alive "$2" || return 0
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "cluster.sh: $1 ($pid) had to be killed"
}

stop() {
    # jobs still queued or running would otherwise be requeued at the next start
    command -v scancel >/dev/null && alive "$CLUSTER_DIR/run/slurmctld.pid" && scancel --full -u "$(id -un)" 2>/dev/null || true
    stop_one sshd "$CLUSTER_DIR/run/sshd.pid"
    stop_one slurmd "$CLUSTER_DIR/run/slurmd.pid"
    stop_one slurmctld "$CLUSTER_DIR/run/slurmctld.pid"
    stop_one munged /run/munge/munged.pid
    echo "cluster.sh: stopped"
}

status() {
    local name file ok=0
    for name in sshd slurmd slurmctld; do
        file=$CLUSTER_DIR/run/$name.pid
        if alive "$file"; then echo "$name: running ($(cat "$file"))"; else echo "$name: not running"; ok=1; fi
    done
    if alive /run/munge/munged.pid; then echo "munged: running ($(cat /run/munge/munged.pid))"; else echo "munged: not running"; ok=1; fi
    if ((ok == 0)) && sbatch_over_ssh; then
        echo "sbatch through ssh: works"
        sinfo
    else
        echo "sbatch through ssh: does not work"
        ok=1
    fi
    return $ok
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
