#!/usr/bin/env bash
# Start a real one-node SLURM cluster (munged + slurmctld + slurmd) on this
# machine, without systemd. Idempotent: what is installed/running is left as is.
# Usage (as root, Debian 12): bash cluster/slurm/start.sh     Stop: cluster/slurm/stop.sh
# Environment: SLURM_START_TIMEOUT (seconds to wait for the node, default 60),
#              SLURM_MEM_MARGIN_MB (memory kept from Slurm, default max(512, 10% of RAM)).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATE="$HERE/slurm.conf.in"
CONF=/etc/slurm/slurm.conf
RUNDIR=/run/slurm
SPOOL=/var/spool/slurmd
STATE=/var/lib/slurm/slurmctld
LOGDIR=/var/log/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
MUNGE_SOCKET=/run/munge/munge.socket.2
TIMEOUT=${SLURM_START_TIMEOUT:-60}
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge procps)
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

T0=$(date +%s)
log() { echo "[slurm/start] $*" >&2; }
die() {
    echo "[slurm/start] ERROR: $*" >&2
    exit 1
}
log_tail() {
    local f
    for f in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" /var/log/munge/munged.log; do
        [[ -f $f ]] && { echo "----- tail $f" >&2; tail -n 25 "$f" >&2; }
    done
    return 0
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
[[ -f $TEMPLATE ]] || die "template not found: $TEMPLATE"

# pid_alive PIDFILE NAME -> prints the pid if PIDFILE names a live process called NAME
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
    echo "$pid"
}

# wait_pidfile PIDFILE NAME SECONDS -> waits until the daemon wrote its pidfile and lives
wait_pidfile() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        pid_alive "$1" "$2" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# stop_daemon PIDFILE NAME (used only to restart slurm daemons after a config change)
stop_daemon() {
    local pid i
    pid=$(pid_alive "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- 1. packages
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt-get)"
    # No init system here: make sure the packages' maintainer scripts do not try
    # to start the daemons themselves (Docker-style policy-rc.d, removed afterwards).
    own_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge procps; } || apt_rc=$?
    [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
    ((apt_rc == 0)) || die "apt-get failed (exit $apt_rc)"
fi
for b in munged munge unmunge slurmctld slurmd sinfo scontrol; do
    command -v "$b" >/dev/null || die "$b not found after installing ${PACKAGES[*]}"
done

# ---------------------------------------------------------------- 2. munge
id munge >/dev/null 2>&1 || die "user 'munge' missing (the munge package creates it)"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s $MUNGE_KEY ]]; then
    log "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
fi
chown munge:munge "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"
if ! pid_alive "$MUNGE_PID" munged >/dev/null; then
    rm -f "$MUNGE_PID"
    log "starting munged"
    runuser -u munge -- munged
    wait_pidfile "$MUNGE_PID" munged 10 || {
        log_tail
        die "munged did not start"
    }
fi
for ((i = 0; i < 50; i++)); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge round trip (munge -n | unmunge) failed"

# ---------------------------------------------------------------- 3. slurm.conf
HOST=$(hostname -s)
CPUS=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
margin=${SLURM_MEM_MARGIN_MB:-$((mem_mb / 10 > 512 ? mem_mb / 10 : 512))}
REALMEM=$((mem_mb - margin))
((REALMEM > 0)) || die "RealMemory would be $REALMEM MB (MemTotal $mem_mb MB, margin $margin MB)"

install -d -m 0755 /etc/slurm "$RUNDIR" "$SPOOL" "$LOGDIR" "$(dirname "$STATE")"
install -d -m 0700 "$STATE"
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
sed -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@REALMEM@|$REALMEM|g" \
    -e "s|@SPOOL@|$SPOOL|g" -e "s|@STATE@|$STATE|g" -e "s|@LOGDIR@|$LOGDIR|g" \
    -e "s|@RUNDIR@|$RUNDIR|g" "$TEMPLATE" >"$rendered"
conf_changed=""
if ! cmp -s "$rendered" "$CONF"; then
    [[ -f $CONF ]] && cp -p "$CONF" "$CONF.bak"
    install -m 0644 "$rendered" "$CONF"
    conf_changed=1
    log "wrote $CONF (node $HOST, CPUs=$CPUS, RealMemory=$REALMEM MB)"
fi

# ---------------------------------------------------------------- 4. daemons
if [[ -n $conf_changed ]]; then
    # A running controller/node would keep the old configuration: restart them.
    stop_daemon "$RUNDIR/slurmd.pid" slurmd
    stop_daemon "$RUNDIR/slurmctld.pid" slurmctld
fi
if ! pid_alive "$RUNDIR/slurmctld.pid" slurmctld >/dev/null; then
    rm -f "$RUNDIR/slurmctld.pid"
    log "starting slurmctld"
    slurmctld || {
        log_tail
        die "slurmctld failed to start"
    }
    wait_pidfile "$RUNDIR/slurmctld.pid" slurmctld 15 || {
        log_tail
        die "slurmctld did not come up"
    }
fi
if ! pid_alive "$RUNDIR/slurmd.pid" slurmd >/dev/null; then
    rm -f "$RUNDIR/slurmd.pid"
    log "starting slurmd"
    slurmd || {
        log_tail
        die "slurmd failed to start"
    }
    wait_pidfile "$RUNDIR/slurmd.pid" slurmd 15 || {
        log_tail
        die "slurmd did not come up"
    }
fi

# ---------------------------------------------------------------- 5. wait for the node
state=""
deadline=$((SECONDS + TIMEOUT))
while ((SECONDS < deadline)); do
    state=$(sinfo -h -N -n "$HOST" -p debug -o '%T' 2>/dev/null | head -n 1 || true)
    case $state in
    idle | mixed | allocated | completing) break ;;
    esac
    sleep 1
done
case $state in
idle | mixed | allocated | completing) ;;
*)
    echo "[slurm/start] ERROR: node $HOST not up after ${TIMEOUT}s (state: '${state:-no answer}')" >&2
    sinfo -R >&2 2>/dev/null || true
    log_tail
    exit 1
    ;;
esac

echo "slurm cluster s2ts-local up in $(($(date +%s) - T0))s: node $HOST $state" \
    "(CPUs=$CPUS RealMemory=${REALMEM}MB), partition debug;" \
    "munged $(pid_alive "$MUNGE_PID" munged) slurmctld $(pid_alive "$RUNDIR/slurmctld.pid" slurmctld)" \
    "slurmd $(pid_alive "$RUNDIR/slurmd.pid" slurmd)"
