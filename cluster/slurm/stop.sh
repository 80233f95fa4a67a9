#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by cluster/slurm/start.sh: jobs still
# queued or running are cancelled first (stopping the cluster ends them anyway,
# and scancel lets slurmstepd kill their process trees instead of orphaning
# them), then slurmd, slurmctld, any leftover slurmstepd, and munged.
# Each daemon is found by its pidfile, else by its exact process name, and
# stopped by pid (TERM, then KILL after 30 s). Idempotent: nothing running -> no-op.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

RUNDIR=/run/slurm
GRACE=${SLURM_STOP_TIMEOUT:-30}

log() { echo "[slurm/stop] $*" >&2; }

# pids_of PIDFILE NAME -> pids of live processes called NAME (pidfile first, then pgrep -x)
pids_of() {
    local pid pids=()
    if [[ -s $1 ]]; then
        pid=$(tr -dc '0-9' <"$1")
        if [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]; then
            pids+=("$pid")
        fi
    fi
    if ((${#pids[@]} == 0)) && command -v pgrep >/dev/null; then
        mapfile -t pids < <(pgrep -x "$2" || true)
    fi
    ((${#pids[@]})) && printf '%s\n' "${pids[@]}"
    return 0
}

# stop NAME PIDFILE [GRACE]
stop() {
    local name=$1 pidfile=$2 grace=${3:-$GRACE} pids pid i alive
    mapfile -t pids < <(pids_of "$pidfile" "$name")
    if ((${#pids[@]} == 0)); then
        log "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping pid ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    if ((alive)); then
        log "$name: still alive after ${grace}s, sending KILL"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# Cancel what is still queued or running while the controller can do it.
if [[ -n $(pids_of "$RUNDIR/slurmctld.pid" slurmctld) ]] && command -v squeue >/dev/null; then
    mapfile -t job_ids < <(squeue -h -o %i -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING 2>/dev/null || true)
    if ((${#job_ids[@]})); then
        log "cancelling ${#job_ids[@]} job(s): ${job_ids[*]}"
        scancel "${job_ids[@]}" 2>/dev/null || true
        # Wait until slurmstepd has killed the job processes (TERM, then KILL
        # after KillWait=10 s) and exited: stopping slurmd earlier orphans them.
        for ((i = 0; i < 250; i++)); do
            if [[ -z $(squeue -h -o %i -t RUNNING,SUSPENDED,CONFIGURING,COMPLETING 2>/dev/null || true) ]] &&
                ! pgrep -x slurmstepd >/dev/null; then
                break
            fi
            sleep 0.1
        done
    fi
fi

stop slurmd "$RUNDIR/slurmd.pid"
stop slurmctld "$RUNDIR/slurmctld.pid"
stop slurmstepd /nonexistent 3 # job step daemons ignore TERM; only left if scancel failed
stop munged /run/munge/munged.pid

left=""
for name in slurmd slurmctld slurmstepd munged; do
    for pid in $(pgrep -x "$name" || true); do left+=" $name:$pid"; done
done
if [[ -n $left ]]; then
    log "ERROR: still running:$left"
    exit 1
fi
# Put our slurm.conf aside: with it in place and no controller, every SLURM client
# call waits for the controller, and snakemake-executor-plugin-slurm runs
# `scontrol show config` (timeout 10 s) whenever Snakemake starts, so every
# snakemake command, local executor included, would take 9 s longer. start.sh
# writes it again. A configuration that is not ours is left alone.
CONF=/etc/slurm/slurm.conf
if [[ -f $CONF ]] && grep -q '^ClusterName=s2ts-local$' "$CONF"; then
    mv -f "$CONF" "$CONF.stopped"
    if [[ -f $CONF.bak ]] && ! grep -q '^ClusterName=s2ts-local$' "$CONF.bak"; then
        mv -f "$CONF.bak" "$CONF"
        log "restored the previous $CONF"
    fi
    log "moved $CONF to $CONF.stopped (start.sh writes it again)"
fi
echo "slurm cluster s2ts-local stopped (slurmd, slurmctld, munged)"
