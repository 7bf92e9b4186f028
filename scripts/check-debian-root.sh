#!/usr/bin/env bash
# CI stage: scripts/setup-node.sh in fresh Debian 12 roots, as a new user would run it (as root).
#   1. systemd as PID 1 (systemd-nspawn --boot): no router, no router config; run twice.
#   2. no systemd (a chroot in its own mount, PID, UTS and IPC namespaces): an existing router
#      configuration that must be kept; run twice.
#   3. README "By hand", its commands run verbatim, beside Debian's yggdrasil under systemd.
# Each time: the service runs as "ygbridge", not root; the state is 0700 and its files 0600;
# "nobody" cannot read the database; a mail round trip over submission and IMAP; port 25 answers
# on the node's mesh address; a third run without a terminal or password ends in one line.
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

# check_node PID MODE PASSWORD: the node set up in the root is least-privileged and carries mail.
check_node() {
    local pid=$1 mode=$2 secret=$3 address owner
    local service_pid
    if [ "$mode" = systemd ]; then
        service_pid=$(in_root "$pid" systemctl show -p MainPID --value ygbridge.service)
    else
        service_pid=$(in_root "$pid" cat /var/run/ygbridge.pid)
    fi
    owner=$(in_root "$pid" stat -c %U "/proc/$service_pid")
    in_root "$pid" grep -E '^Cap(Eff|Amb)' "/proc/$service_pid/status"
    echo "service runs as: $owner"
    [ "$owner" = ygbridge ] || fail "the service runs as $owner, not ygbridge"
    in_root "$pid" stat -c '%a %U:%G %n' /var/lib/ygbridge /var/lib/ygbridge/ygbridge.db \
        /var/lib/ygbridge/ygbridge-key.pem /var/lib/ygbridge/ygbridge-cert.pem /etc/ygbridge \
        /etc/ygbridge/ygbridge.ini | tee "$work/modes"
    grep -qx '700 ygbridge:ygbridge /var/lib/ygbridge' "$work/modes" || fail "state directory mode"
    [ "$(grep -c '^600 ygbridge:ygbridge /var/lib/ygbridge/' "$work/modes")" = 3 ] || fail "state file modes"
    grep -qx '640 root:ygbridge /etc/ygbridge/ygbridge.ini' "$work/modes" || fail "config mode"
    if in_root "$pid" setpriv --reuid=nobody --regid=nogroup --clear-groups cat /var/lib/ygbridge/ygbridge.db >/dev/null 2>&1; then
        fail "nobody can read the database"
    fi
    echo "nobody cannot read the database: ok"
    address=$(in_root "$pid" ygbridge address alice)
    in_root "$pid" /opt/ygbridge/bin/python /root/ygbridge/tests/system/mail_roundtrip.py alice "$secret" "$address"
    in_root "$pid" ygbridge status | head -3
    if [ "$mode" = systemd ]; then
        in_root "$pid" systemctl show -p User -p ActiveState ygbridge.service
        in_root "$pid" systemd-analyze security --threshold=40 ygbridge.service | tail -1
    fi
}

# setup_twice PID: the README's set-up command, then again; then a third user without a password.
setup_twice() {
    local pid=$1 run output
    for run in 1 2; do
        log "setup-node.sh alice, run $run"
        SECONDS=0
        in_root "$pid" YGBRIDGE_PASSWORD="$password" bash /root/ygbridge/scripts/setup-node.sh alice </dev/null |
            tee "$work/setup-$run.log" || fail "setup-node.sh run $run failed"
        echo "(run $run took ${SECONDS}s)"
        grep -q '^Your address: ' "$work/setup-$run.log" || fail "setup run $run printed no address"
        grep -q 'public-peers' "$work/setup-$run.log" || fail "setup run $run said nothing about peers"
    done
    log "setup-node.sh bob without a terminal or password"
    if output=$(in_root "$pid" bash /root/ygbridge/scripts/setup-node.sh bob </dev/null 2>&1); then
        fail "setup without a password succeeded"
    fi
    echo "$output" | tail -1
    ! echo "$output" | grep -q Traceback || fail "a traceback: $output"
    echo "$output" | tail -1 | grep -q 'YGBRIDGE_PASSWORD' || fail "no hint: $output"
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
setup_twice "$init"
check_node "$init" systemd "$password"
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
service_ready() { in_root "$init" journalctl -u ygbridge -o cat | grep -q '"ygbridge.ready"'; }
wait_for 120 service_ready || fail "the service set up by hand did not become ready"
in_root "$init" ln -sf /opt/ygbridge/bin/ygbridge /usr/local/bin/ygbridge
check_node "$init" systemd "a good password"
power_off

log "case 2: no systemd, an existing router configuration"
dir=$(new_root plain)
install -d -m 0750 "$dir/etc/yggdrasil"
/usr/sbin/yggdrasil -genconf | sed 's#^\(\s*AdminListen:\).*#\1 unix:///var/run/yggdrasil/yggdrasil.sock#' \
    >"$dir/etc/yggdrasil/yggdrasil.conf"
sha256sum "$dir/etc/yggdrasil/yggdrasil.conf" >"$work/router-conf.sum"
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
setup_twice "$sleeper"
check_node "$sleeper" plain "$password"
sha256sum -c "$work/router-conf.sum" >/dev/null || fail "setup-node.sh changed the existing router configuration"
echo "the existing router configuration was kept"

log "check-debian-root: all passed"
