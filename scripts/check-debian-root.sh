#!/usr/bin/env bash
# CI stage: scripts/setup-node.sh in fresh Debian 12 roots, as a new user would run it (as root).
#   1. systemd as PID 1 (systemd-nspawn --boot): no router, no router config; run twice.
#   2. no systemd (a chroot in its own mount, PID, UTS and IPC namespaces): an existing router
#      configuration that must be kept; run twice.
#   3. README "By hand", its commands run verbatim, beside Debian's yggdrasil under systemd; then
#      README "PostgreSQL" verbatim (Debian's server, peer authentication) and a mail round trip.
# In cases 1 and 2, first a router configuration yggdrasil rejects: setup-node.sh must stop soon,
# with no traceback, its last line naming the router's log. Then between the two runs alice mails
# herself: run 2 must keep that mail, ygbridge.ini, the router's configuration, the TLS key and
# certificate and the address (and leave yggdrasil and ygbridge enabled under systemd); each run
# prints the address, the client settings and the public peers. A third run without a terminal or
# password ends in one line.
# Each time: the service runs as "ygbridge", not root, with cap_net_bind_service alone (for port 25)
# and NoNewPrivs; the state is 0700 and its files 0600, the configuration directory 0750 and file
# 0640 root:ygbridge; "nobody" can read none of the state's files (database, -wal, -shm, key,
# certificate) nor the configuration; a mail round trip over submission and IMAP; port 25 answers
# on the node's mesh address; `ygbridge status` names the node.
# The unit's `systemd-analyze security` exposure must be at most 4.0 (offline here and online
# inside the booted root).
# The roots reach Debian's mirror and PyPI only through a proxy on a veth of a network namespace
# made here (tinyproxy), so their routers stay inside that namespace. Needs: mmdebstrap,
# systemd-container, tinyproxy, iproute2 (installed by .ci/run). The root is cached as a tarball.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=/var/cache/ygbridge-ci
tarball=$cache/bookworm-root.tar
work=$(mktemp -d /var/tmp/ygbridge-root.XXXXXX)
netns=ygci-root-$$
host_ip=10.213.$(($$ % 250)).1
root_ip=10.213.$(($$ % 250)).2
proxy=http://$host_ip:3128
password=ci-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
kept=

# shellcheck source=scripts/ci-lib.sh
. "$here/scripts/ci-lib.sh"
init=
sleeper=
show_logs() {
    if [ -n "$init" ] && kill -0 "$init" 2>/dev/null; then
        in_root "$init" journalctl --no-pager -n 60 -u yggdrasil -u ygbridge || true
    fi
    if [ -n "$sleeper" ] && kill -0 "$sleeper" 2>/dev/null; then
        in_root "$sleeper" tail -n 30 /var/log/yggdrasil.log /var/log/ygbridge.log || true
    fi
}

cleanup() {
    stop_pids
    ip netns del "$netns" 2>/dev/null || true
    ip link del "ygh$$" 2>/dev/null || true
    for dir in "$work"/*/; do umount -R "$dir" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

log "unit: systemd-analyze security --offline"
systemd-analyze security --offline=yes --threshold=40 "$here/conf/ygbridge.service" | tail -1

log "root file system"
if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    mmdebstrap --quiet --format=tar --variant=minbase --include=systemd-sysv,dbus,ca-certificates \
        bookworm "$tarball.new" http://deb.debian.org/debian
    mv "$tarball.new" "$tarball"
fi
ls -l "$tarball"

log "network: namespace $netns, proxy $proxy"
ip netns add "$netns"
ip link add "ygh$$" type veth peer name eth0 netns "$netns"
ip addr add "$host_ip/30" dev "ygh$$"
ip link set "ygh$$" up
ip -n "$netns" addr add "$root_ip/30" dev eth0
ip -n "$netns" link set eth0 up
ip -n "$netns" link set lo up
cat >"$work/tinyproxy.conf" <<EOF
Port 3128
Listen $host_ip
Timeout 600
MaxClients 20
Allow $root_ip
ConnectPort 443
LogLevel Warning
EOF
tinyproxy -d -c "$work/tinyproxy.conf" >"$work/tinyproxy.log" 2>&1 &
pids+=($!)

new_root() {
    local dir=$work/$1
    mkdir "$dir"
    tar -C "$dir" -xf "$tarball"
    # The project as a user would have it: a copy of the checkout, without .git.
    mkdir "$dir/root/ygbridge"
    tar -C "$here" --exclude=.git --exclude='*.egg-info' --exclude=build -cf - . | tar -C "$dir/root/ygbridge" -xf -
    # This machine's own trusted CAs (its way out may inspect TLS), for pip in the root.
    cp /etc/ssl/certs/ca-certificates.crt "$dir/root/host-ca.crt"
    echo "$dir"
}

# in_root PID COMMAND...: run a command inside the root whose init (or sleeping PID 1) is PID.
in_root() {
    local pid=$1
    shift
    nsenter -t "$pid" -m -u -i -n -p -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 http_proxy="$proxy" https_proxy="$proxy" PIP_CERT=/root/host-ca.crt "$@"
}

# check_node PID MODE PASSWORD [KEPT]: the node set up in the root is least-privileged and carries
# mail (KEPT: the token of a message sent before, which must still be in alice's INBOX).
check_node() {
    local pid=$1 mode=$2 secret=$3 kept=${4:-} address service_pid owner capset private readable
    local files=() earlier=()
    if [ "$mode" = systemd ]; then
        service_pid=$(in_root "$pid" systemctl show -p MainPID --value ygbridge.service)
    else
        service_pid=$(in_root "$pid" cat /var/run/ygbridge.pid)
    fi
    # The service's user, and its capabilities: cap_net_bind_service (bit 10, for port 25) alone.
    owner=$(in_root "$pid" stat -c %U "/proc/$service_pid")
    echo "service runs as: $owner"
    [ "$owner" = ygbridge ] || fail "the service runs as $owner, not ygbridge"
    in_root "$pid" grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' "/proc/$service_pid/status" | tee "$work/caps"
    for capset in CapInh CapPrm CapEff CapAmb; do
        grep -Eq "^$capset:\s+0000000000000400$" "$work/caps" ||
            fail "the service's $capset is not cap_net_bind_service alone (0x400): $(grep "^$capset:" "$work/caps")"
    done
    if [ "$mode" = systemd ]; then
        grep -Eq '^CapBnd:\s+0000000000000400$' "$work/caps" ||
            fail "the unit's bounding set is not cap_net_bind_service alone: $(grep '^CapBnd:' "$work/caps")"
    fi
    grep -Eq '^NoNewPrivs:\s+1$' "$work/caps" || fail "the service may gain privileges (NoNewPrivs is not 1)"
    # Modes: the state directory 0700 and everything in it 0600 (or 0700), the service's;
    # the configuration directory 0750 and the file 0640, root's and readable by the group.
    in_root "$pid" find /var/lib/ygbridge /etc/ygbridge -printf '%y %m %u:%g %p\n' | tee "$work/modes"
    grep -qx 'd 700 ygbridge:ygbridge /var/lib/ygbridge' "$work/modes" || fail "/var/lib/ygbridge is not 0700 ygbridge"
    for file in ygbridge.db ygbridge-key.pem ygbridge-cert.pem; do
        grep -qx "f 600 ygbridge:ygbridge /var/lib/ygbridge/$file" "$work/modes" || fail "$file is not 0600 ygbridge"
    done
    private=$(grep ' /var/lib/ygbridge/' "$work/modes" | grep -Ev '^(f 600|d 700) ygbridge:ygbridge ' || true)
    [ -z "$private" ] || fail "not private to ygbridge: $private"
    grep -qx 'd 750 root:ygbridge /etc/ygbridge' "$work/modes" || fail "/etc/ygbridge is not 0750 root:ygbridge"
    grep -qx 'f 640 root:ygbridge /etc/ygbridge/ygbridge.ini' "$work/modes" || fail "ygbridge.ini is not 0640 root:ygbridge"
    # nobody reads none of the state's files (database, -wal, -shm, key, certificate) nor the config.
    mapfile -t files < <(sed -n 's#^f [0-7]* [^ ]* ##p' "$work/modes")
    as_nobody() { in_root "$pid" setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
    as_nobody cat /etc/os-release >/dev/null || fail "setpriv as nobody cannot read /etc/os-release either"
    # shellcheck disable=SC2016  # (expanded by that sh)
    readable=$(as_nobody sh -c 'for file; do cat -- "$file" >/dev/null 2>&1 && echo "$file"; done; true' sh "${files[@]}")
    [ -z "$readable" ] || fail "nobody can read: $readable"
    echo "nobody can read none of: ${files[*]##*/}"
    # Mail: the message sent before (if any) is still there; a new one goes round.
    address=$(in_root "$pid" ygbridge address alice)
    [ -z "$kept" ] || earlier=(--kept "$kept")
    in_root "$pid" /opt/ygbridge/bin/python /root/ygbridge/tests/system/mail_roundtrip.py alice "$secret" "$address" "${earlier[@]}"
    in_root "$pid" ygbridge status >"$work/status" 2>&1 || fail "ygbridge status: $(cat "$work/status")"
    head -3 "$work/status"
    grep -qx "domain: *${address#*@}" "$work/status" || fail "ygbridge status does not name the node's domain ${address#*@}"
    if [ "$mode" = systemd ]; then
        in_root "$pid" systemctl show -p User -p ActiveState ygbridge.service
        in_root "$pid" systemd-analyze security --threshold=40 ygbridge.service | tail -1
    fi
}

# What setup-node.sh keeps from one run to the next (the router's too: the node's address).
kept_files=(/etc/ygbridge/ygbridge.ini /etc/yggdrasil/yggdrasil.conf /var/lib/ygbridge/ygbridge-key.pem
    /var/lib/ygbridge/ygbridge-cert.pem)

# setup_twice PID MODE: the README's set-up command, a mail, the command again; then a third user
# without a password. Sets $kept, the token of the mail sent between the runs.
setup_twice() {
    local pid=$1 mode=$2 run output enabled
    for run in 1 2; do
        log "setup-node.sh alice, run $run"
        SECONDS=0
        in_root "$pid" YGBRIDGE_PASSWORD="$password" bash /root/ygbridge/scripts/setup-node.sh alice </dev/null |
            tee "$work/setup-$run.log" || fail "setup-node.sh run $run failed"
        echo "(run $run took ${SECONDS}s)"
        # The end of its output: the address, the client settings the round trip uses, the peers.
        grep -q '^Your address: ' "$work/setup-$run.log" || fail "setup run $run printed no address"
        grep -Eq '^IMAP: .*127\.0\.0\.1 port 1143' "$work/setup-$run.log" || fail "setup run $run printed no IMAP settings"
        grep -Eq '^SMTP.*: .*127\.0\.0\.1 port 1025' "$work/setup-$run.log" || fail "setup run $run printed no SMTP settings"
        grep -q 'public-peers' "$work/setup-$run.log" || fail "setup run $run said nothing about peers"
        sed -n 's/^Your address: *//p' "$work/setup-$run.log" >"$work/address-$run"
        in_root "$pid" sha256sum "${kept_files[@]}" >"$work/kept-$run.sum"
        if [ "$run" = 1 ]; then
            in_root "$pid" /opt/ygbridge/bin/python /root/ygbridge/tests/system/mail_roundtrip.py alice \
                "$password" "$(cat "$work/address-1")" | tee "$work/mail-1"
            kept=$(sed -n 's/^round trip: \([0-9a-f]*\) .*/\1/p' "$work/mail-1")
        fi
    done
    cmp -s "$work/kept-1.sum" "$work/kept-2.sum" ||
        fail "run 2 changed what run 1 set up: $(diff "$work/kept-1.sum" "$work/kept-2.sum")"
    cmp -s "$work/address-1" "$work/address-2" || fail "the address changed: $(cat "$work/address-"[12])"
    echo "run 2 kept: ${kept_files[*]} and the address $(cat "$work/address-2")"
    if [ "$mode" = systemd ]; then
        enabled=$(in_root "$pid" systemctl is-enabled yggdrasil.service ygbridge.service || true)
        [ "$enabled" = $'enabled\nenabled' ] || fail "yggdrasil and ygbridge not both enabled: $enabled"
        echo "yggdrasil.service and ygbridge.service: enabled"
    fi
    log "setup-node.sh bob without a terminal or password"
    if output=$(in_root "$pid" bash /root/ygbridge/scripts/setup-node.sh bob </dev/null 2>&1); then
        fail "setup without a password succeeded"
    fi
    echo "$output" | tail -1
    ! echo "$output" | grep -q Traceback || fail "a traceback: $output"
    echo "$output" | tail -1 | grep -q 'YGBRIDGE_PASSWORD' || fail "no hint: $output"
}

# router_rejects PID HINT: with a router configuration yggdrasil rejects, setup-node.sh fails without
# a traceback, its last line naming the router's log HINT; run again (yggdrasil installed now), it
# must notice the stopped router at once, not wait out its 20 s for the admin socket. The
# configuration is removed afterwards.
router_rejects() {
    local pid=$1 hint=$2 run output
    in_root "$pid" sh -c 'install -d -m 0750 /etc/yggdrasil && echo "{ not a configuration" >/etc/yggdrasil/yggdrasil.conf'
    for run in 1 2; do
        log "setup-node.sh alice with a router configuration yggdrasil rejects, run $run"
        SECONDS=0
        if output=$(in_root "$pid" YGBRIDGE_PASSWORD="$password" bash /root/ygbridge/scripts/setup-node.sh alice </dev/null 2>&1); then
            fail "setup-node.sh succeeded with a router configuration yggdrasil rejects"
        fi
        printf '%s\n' "$output" >"$work/rejected-$run.log"
        tail -1 "$work/rejected-$run.log"
        echo "(failed after ${SECONDS}s$([ "$run" = 2 ] || echo ", yggdrasil's installation included"))"
        ! grep -q Traceback "$work/rejected-$run.log" || fail "a traceback: $output"
        tail -1 "$work/rejected-$run.log" | grep -qF "$hint" || fail "the last line does not name $hint: $output"
    done
    [ "$SECONDS" -lt 15 ] || fail "setup-node.sh took ${SECONDS}s to notice that the router had stopped"
    in_root "$pid" rm /etc/yggdrasil/yggdrasil.conf
}

# A TUN device node as udev makes it on Debian (0666; this host's own may be 0600).
mknod -m 0666 "$work/tun" c 10 200

# boot_root NAME: boot a new root with systemd as PID 1; sets $init (its PID 1) and $nspawn.
boot_root() {
    local dir
    SECONDS=0
    dir=$(new_root "$1")
    systemd-nspawn --quiet --directory="$dir" --boot --register=no --keep-unit --console=passive \
        --machine="ygci$1$$" --network-namespace-path="/run/netns/$netns" --capability=CAP_NET_ADMIN \
        --bind="$work/tun:/dev/net/tun" >"$work/nspawn-$1.log" 2>&1 &
    nspawn=$!
    pids+=("$nspawn")
    # Until boot has finished (systemd-tmpfiles cleans /tmp under a running apt otherwise).
    # nspawn's first child may be a short-lived helper: look for PID 1 again each time.
    state=
    booted() {
        init=$(pgrep -P "$nspawn" | head -1 || true)
        kill -0 "$nspawn" 2>/dev/null || fail "systemd-nspawn exited: $(cat "$work/nspawn-$1.log")"
        state=$([ -n "$init" ] && in_root "$init" systemctl is-system-running 2>/dev/null || true)
        case $state in running | degraded) return 0 ;; *) return 1 ;; esac
    }
    wait_for 300 booted "$1" || true
    echo "booted in ${SECONDS}s: $state"
    case $state in running | degraded) ;; *) fail "the root did not boot: $state" ;; esac
}

power_off() {
    in_root "$init" systemctl poweroff || true
    wait_for 60 not_running "$nspawn" || true
    init=
}

log "case 1: systemd as PID 1, no router"
boot_root systemd
router_rejects "$init" "journalctl -u yggdrasil"
setup_twice "$init" systemd
check_node "$init" systemd "$password" "$kept"
power_off

log "case 3: README \"By hand\", verbatim, beside Debian's yggdrasil (0.4.7) under systemd"
boot_root byhand
# The section's precondition: a running router whose socket is in group yggdrasil.
in_root "$init" sh -c 'apt-get update -q >/dev/null && apt-get install -y -q yggdrasil >/dev/null &&
    yggdrasil -genconf | sed "s#^\(\s*AdminListen:\).*#\1 unix:///var/run/yggdrasil/yggdrasil.sock#" \
        >/etc/yggdrasil/yggdrasil.conf && chgrp yggdrasil /etc/yggdrasil/yggdrasil.conf &&
    chmod 0640 /etc/yggdrasil/yggdrasil.conf && systemctl enable --now yggdrasil' ||
    fail "could not start Debian's yggdrasil"
# The README's "By hand" commands: the indented lines from its first command to `systemctl ... --now`.
sed -n '/^### By hand/,/^Without systemd/p' "$here/README.md" | sed -n 's/^    //p' >"$work/byhand.sh"
sed -n '1p;$p' "$work/byhand.sh"
[ "$(wc -l <"$work/byhand.sh")" -gt 5 ] || fail "no By hand commands in README.md"
cp "$work/byhand.sh" "/proc/$init/root/root/byhand.sh"
wait_for 60 in_root "$init" test -S /var/run/yggdrasil/yggdrasil.sock || fail "Debian's yggdrasil made no admin socket"
in_root "$init" sh -c 'cd /root/ygbridge && bash -e /root/byhand.sh' || fail "README By hand failed"
service_ready() { output_has '"ygbridge.ready"' in_root "$init" journalctl -u ygbridge -o cat; }
wait_for 120 service_ready || fail "the service set up by hand did not become ready"
in_root "$init" ln -sf /opt/ygbridge/bin/ygbridge /usr/local/bin/ygbridge
check_node "$init" systemd "a good password"

log "case 3, continued: README \"PostgreSQL\", verbatim (Debian's server, peer authentication)"
# The section's indented lines: a local server, the extra, the configuration, init and a user.
sed -n '/^### PostgreSQL/,/^The users and mail/p' "$here/README.md" | sed -n 's/^    //p' >"$work/postgresql.sh"
sed -n '1p;$p' "$work/postgresql.sh"
[ "$(wc -l <"$work/postgresql.sh")" -gt 5 ] || fail "no PostgreSQL commands in README.md"
cp "$work/postgresql.sh" "/proc/$init/root/root/postgresql.sh"
ready_count() { in_root "$init" journalctl -u ygbridge -o cat | grep -c '"ygbridge.ready"' || true; }
ready_before=$(ready_count)
in_root "$init" sh -c 'cd /root/ygbridge && bash -e /root/postgresql.sh' | tee "$work/postgresql.log" ||
    fail "README PostgreSQL failed"
grep -q '^database ready: postgresql://ygbridge@' "$work/postgresql.log" || fail "init did not use PostgreSQL"
ready_again() { [ "$(ready_count)" -gt "$ready_before" ]; }
wait_for 120 ready_again || fail "the service on PostgreSQL did not become ready"
as_service() { in_root "$init" runuser -u ygbridge -- /opt/ygbridge/bin/ygbridge "$@"; }
as_service status >"$work/status" 2>&1 || fail "ygbridge status on PostgreSQL: $(cat "$work/status")"
head -2 "$work/status"
address=$(as_service address alice)
in_root "$init" /opt/ygbridge/bin/python /root/ygbridge/tests/system/mail_roundtrip.py alice "a good password" "$address"
stored=$(in_root "$init" runuser -u postgres -- psql -Atd ygbridge -c 'SELECT count(*) FROM message')
[ "$stored" -ge 1 ] || fail "no message in PostgreSQL after the round trip ($stored)"
echo "messages in PostgreSQL: $stored"
# The TLS pair stays in the state directory: /etc/ygbridge is not the service's to write.
in_root "$init" find /etc/ygbridge /var/lib/ygbridge -name '*.pem' -printf '%m %u %p\n' | tee "$work/pems"
! grep -q ' /etc/ygbridge/' "$work/pems" || fail "a TLS file in /etc/ygbridge: $(cat "$work/pems")"
[ "$(grep -c '^600 ygbridge /var/lib/ygbridge/' "$work/pems")" = 2 ] || fail "the TLS pair is not 0600 in /var/lib/ygbridge"
output_has postgresql.service in_root "$init" systemctl show -p After ygbridge.service ||
    fail "ygbridge.service does not come after postgresql.service"
in_root "$init" systemd-analyze security --threshold=40 ygbridge.service | tail -1
power_off

log "case 2: no systemd, an existing router configuration"
dir=$(new_root plain)
ip netns exec "$netns" unshare --mount --uts --ipc --pid --fork --kill-child --propagation private bash -c "
    mount -t proc proc '$dir/proc' && mount --rbind /dev '$dir/dev' && mount --bind '$work/tun' '$dir/dev/net/tun' && mount -t sysfs sysfs '$dir/sys' &&
    mount -t tmpfs -o mode=755 tmpfs '$dir/run' && mkdir -p '$dir/run/lock' &&
    exec chroot '$dir' /bin/sleep infinity" &
pids+=($!)
# Ready once it has changed root (before its chroot, the host's own /run/lock is seen there).
chrooted() {
    sleeper=$(pgrep -P "${pids[-1]}" | head -1) && [ -n "$sleeper" ] &&
        [ -d "/proc/$sleeper/root/run/lock" ] && [ -e "/proc/$sleeper/root/root/ygbridge/scripts/setup-node.sh" ]
}
wait_for 60 chrooted || fail "the chroot did not start"
router_rejects "$sleeper" /var/log/yggdrasil.log
# The existing configuration (root's alone: setup-node.sh must let the router's group read it).
rm -rf "$dir/etc/yggdrasil"
install -d -m 0750 "$dir/etc/yggdrasil"
/usr/sbin/yggdrasil -genconf | sed 's#^\(\s*AdminListen:\).*#\1 unix:///var/run/yggdrasil/yggdrasil.sock#' \
    >"$dir/etc/yggdrasil/yggdrasil.conf"
sha256sum "$dir/etc/yggdrasil/yggdrasil.conf" >"$work/router-conf.sum"
setup_twice "$sleeper" plain
check_node "$sleeper" plain "$password" "$kept"
sha256sum -c "$work/router-conf.sum" >/dev/null || fail "setup-node.sh changed the existing router configuration"
echo "the existing router configuration was kept"

log "check-debian-root: all passed"
