#!/usr/bin/env bash
# CI stage: build the Dockerfile with a real engine and run the image as the README says (as root).
# No container registry is reachable here and this machine runs no Docker engine, so:
#   - Debian 12's docker.io runs in a fresh Debian root (mmdebstrap), entered with pivot_root in its
#     own mount namespace and in a network namespace made here (no bridge, no iptables: host network);
#   - the base image is made locally (mmdebstrap | docker import) and passed as --build-arg BASE;
#   - the build reaches Debian's mirror and PyPI through a proxy on the namespace's veth.
# Then: a yggdrasil router in that namespace (as the yggdrasil user), the container started with only
# the state volume and the router's socket mounted; the default configuration written into the
# volume; a non-root user; private files that `nobody` cannot read; a mail round trip and port 25;
# `ygbridge status` naming the node; commands that share the database waiting for each other (two
# started together while a third holds the write lock, as `init` while it migrates); the
# HEALTHCHECK turning healthy. Then conf/docker-compose.yml brought up as README says, with a mail
# round trip in it. Needs mmdebstrap, tinyproxy, iproute2, and yggdrasil 0.5 at $YGG_05.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=/var/cache/ygbridge-ci
engine_tar=$cache/docker-root-compose.tar
base_tar=$cache/image-base.tar
ygg05=${YGG_05:-/opt/yggdrasil-0.5.12/usr/sbin/yggdrasil}
work=$(mktemp -d /var/tmp/ygbridge-docker.XXXXXX)
root=$work/root
netns=ygci-docker-$$
host_ip=10.214.$(($$ % 250)).1
ns_ip=10.214.$(($$ % 250)).2
proxy=http://$host_ip:3128
password=ci-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
dockerd=

# shellcheck source=scripts/ci-lib.sh
. "$here/scripts/ci-lib.sh"
show_logs() {
    [ -n "$dockerd" ] || return 0
    # shellcheck disable=SC2016  # (expanded by that sh)
    in_engine sh -c 'for c in $(docker ps -aq); do docker logs "$c" 2>&1 | tail -n 30; done'
}
in_engine() { nsenter -t "$dockerd" -m -n -r -w "$@"; }

cleanup() {
    if [ -n "$dockerd" ] && kill -0 "$dockerd" 2>/dev/null; then
        in_engine sh -c 'docker ps -aq | xargs -r docker rm -f' >/dev/null 2>&1 || true
    fi
    stop_pids
    ip netns del "$netns" 2>/dev/null || true
    ip link del "ygd$$" 2>/dev/null || true
    # containerd and its shims may outlive dockerd for a moment
    for _ in $(seq 30); do
        rm -rf --one-file-system "$work" 2>/dev/null && [ ! -e "$work" ] && break
        sleep 1
    done
}
trap cleanup EXIT

log "engine root and base image (cached in $cache)"
mkdir -p "$cache"
if [ ! -s "$engine_tar" ]; then
    mmdebstrap --quiet --format=tar --variant=minbase --include=docker.io,docker-compose,ca-certificates,passwd \
        bookworm "$engine_tar.new" http://deb.debian.org/debian
    mv "$engine_tar.new" "$engine_tar"
fi
if [ ! -s "$base_tar" ]; then
    # Debian's python3 as the image's base; this machine's trusted CAs for pip (its way out may
    # inspect TLS): part of the test's environment, not of the image the Dockerfile describes.
    cp /etc/ssl/certs/ca-certificates.crt "$work/host-ca.crt"
    mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,libcap2-bin,ca-certificates \
        --customize-hook="cp '$work/host-ca.crt' \"\$1/etc/ssl/host-ca.crt\"" \
        --customize-hook='printf "[global]\ncert = /etc/ssl/host-ca.crt\n" >"$1/etc/pip.conf"' \
        bookworm "$base_tar.new" http://deb.debian.org/debian
    mv "$base_tar.new" "$base_tar"
fi
mkdir "$root"
tar -C "$root" -xf "$engine_tar"
cp "$ygg05" "$root/usr/local/bin/yggdrasil"
mknod -m 0666 "$root/root/tun" c 10 200  # as udev makes it (this host's own may be 0600)
mkdir "$root/root/src"
tar -C "$here" --exclude=.git -cf - . | tar -C "$root/root/src" -xf -

log "network: namespace $netns, proxy $proxy"
ip netns add "$netns"
ip link add "ygd$$" type veth peer name eth0 netns "$netns"
ip addr add "$host_ip/30" dev "ygd$$"
ip link set "ygd$$" up
ip -n "$netns" addr add "$ns_ip/30" dev eth0
ip -n "$netns" link set eth0 up
ip -n "$netns" link set lo up
printf 'Port 3128\nListen %s\nTimeout 600\nMaxClients 20\nAllow %s\nConnectPort 443\nLogLevel Warning\n' \
    "$host_ip" "$ns_ip" >"$work/tinyproxy.conf"
tinyproxy -d -c "$work/tinyproxy.conf" >"$work/tinyproxy.log" 2>&1 &
pids+=($!)

log "dockerd (Debian's docker.io)"
nsenter --net="/run/netns/$netns" unshare --mount --propagation private sh -c "
    mount --bind '$root' '$root' && mount --rbind /dev '$root/dev' && mount -t proc proc '$root/proc' &&
    mount --rbind /sys '$root/sys' && mount -t tmpfs tmpfs '$root/run' && mkdir -p '$root/run/lock' '$root/.old' &&
    mount --bind '$root/root/tun' '$root/dev/net/tun' && cd '$root' && pivot_root . .old && umount -l /.old &&
    exec dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2" \
    >"$work/dockerd.log" 2>&1 &
pids+=($!)
dockerd=${pids[-1]}  # nsenter, unshare and sh each exec the next
engine_answers() {
    kill -0 "$dockerd" 2>/dev/null || fail "dockerd exited: $(tail -5 "$work/dockerd.log")"
    in_engine docker version >/dev/null 2>&1
}
wait_for 120 engine_answers || fail "dockerd did not start: $(tail -5 "$work/dockerd.log")"
in_engine docker version --format 'engine: Docker {{.Server.Version}}'

log "docker build --build-arg BASE=ygbridge-base:bookworm"
in_engine docker import - ygbridge-base:bookworm <"$base_tar" >/dev/null
SECONDS=0
in_engine docker build --quiet --network host --build-arg BASE=ygbridge-base:bookworm \
    --build-arg http_proxy="$proxy" --build-arg https_proxy="$proxy" -t ygbridge /root/src ||
    fail "docker build failed"
echo "built in ${SECONDS}s"

log "router, then the container with only the state volume and the router socket"
in_engine sh -c 'groupadd --system yggdrasil && useradd --system -g yggdrasil -M -s /usr/sbin/nologin yggdrasil &&
    mkdir -p /etc/yggdrasil && yggdrasil -genconf |
    sed "0,/^{/s##{\n  AdminListen: unix:///var/run/yggdrasil/yggdrasil.sock#" >/etc/yggdrasil/yggdrasil.conf &&
    chgrp yggdrasil /etc/yggdrasil/yggdrasil.conf && chmod 0640 /etc/yggdrasil/yggdrasil.conf &&
    install -d -o yggdrasil -g yggdrasil /var/run/yggdrasil'
nsenter -t "$dockerd" -m -n -r -w setpriv --reuid=yggdrasil --regid=yggdrasil --init-groups \
    --inh-caps=+net_admin,+net_bind_service --ambient-caps=+net_admin,+net_bind_service \
    yggdrasil -useconffile /etc/yggdrasil/yggdrasil.conf >"$work/yggdrasil.log" 2>&1 &
pids+=($!)  # nsenter and setpriv exec: this is the router's PID
wait_for 60 in_engine test -S /var/run/yggdrasil/yggdrasil.sock || fail "the router made no admin socket"
gid=$(in_engine getent group yggdrasil | cut -d: -f3)
in_engine docker run -d --name yg --network host --group-add "$gid" --health-interval 5s \
    -v /var/run/yggdrasil:/var/run/yggdrasil -v ygbridge-data:/var/lib/ygbridge ygbridge >/dev/null
SECONDS=0
container_ready() {
    output_has '"ygbridge.ready"' in_engine docker logs yg && return
    [ "$(in_engine docker inspect --format '{{.State.Running}}' yg)" = true ] || fail "the container exited"
    return 1
}
wait_for 300 container_ready || fail "the container was not ready after ${SECONDS}s"
echo "ready after ${SECONDS}s"
output_has 'wrote the default configuration' in_engine docker logs yg || fail "no default configuration written"
uid=$(in_engine docker exec yg id -u)
echo "container user id: $uid"
[ "$uid" != 0 ] || fail "the container runs as root"
in_engine docker exec yg find /var/lib/ygbridge -printf '%y %m %u %p\n' | tee "$work/modes"
grep -qx 'd 700 ygbridge /var/lib/ygbridge' "$work/modes" || fail "the volume is not 0700 ygbridge"
private=$(grep -Ev '^(f 600|d 700) ygbridge ' "$work/modes" || true)
[ -z "$private" ] || fail "not private to ygbridge: $private"
mapfile -t files < <(sed -n 's#^f [0-7]* [^ ]* ##p' "$work/modes")
in_engine docker exec --user nobody yg cat /etc/os-release >/dev/null || fail "nobody cannot read /etc/os-release either"
# shellcheck disable=SC2016  # (expanded by that sh)
readable=$(in_engine docker exec --user nobody yg sh -c \
    'for file; do cat -- "$file" >/dev/null 2>&1 && echo "$file"; done; true' sh "${files[@]}")
[ -z "$readable" ] || fail "nobody can read: $readable"
echo "nobody can read none of: ${files[*]##*/}"

log "mail round trip and status inside the container"
echo "$password" | in_engine docker exec -i yg ygbridge user add alice --password-stdin >"$work/user-add" ||
    fail "user add: $(cat "$work/user-add")"
head -1 "$work/user-add"
address=$(in_engine docker exec yg ygbridge address alice)
in_engine docker exec -i yg python - alice "$password" "$address" <"$here/tests/system/mail_roundtrip.py"
in_engine docker exec yg ygbridge status >"$work/status" 2>&1 || fail "ygbridge status: $(cat "$work/status")"
head -3 "$work/status"
grep -qx "domain: *${address#*@}" "$work/status" || fail "ygbridge status does not name the node's domain ${address#*@}"

log "commands sharing the database wait for each other"
in_engine docker exec -i yg python - 'ygbridge status' 'ygbridge init' <"$here/tests/system/commands_wait.py" ||
    fail "commands sharing the database did not wait for each other"
SECONDS=0
healthy() { [ "$(in_engine docker inspect --format '{{.State.Health.Status}}' yg)" = healthy ]; }
wait_for 300 healthy ||
    fail "HEALTHCHECK after ${SECONDS}s: $(in_engine docker inspect --format '{{json .State.Health}}' yg)"
echo "healthy after ${SECONDS}s"

log "conf/docker-compose.yml brought up (docker-compose $(in_engine docker-compose version --short))"
in_engine docker rm -f yg >/dev/null  # it holds the ports the Compose service binds (host network)
compose() {
    in_engine env YGGDRASIL_GID="$gid" YGBRIDGE_BASE=ygbridge-base:bookworm \
        docker-compose -f /root/src/conf/docker-compose.yml "$@"
}
compose config >"$work/compose" || fail "docker-compose rejects conf/docker-compose.yml"
grep -E 'network_mode|NET_BIND|/var/run/yggdrasil:|"?'"$gid" "$work/compose"
# README's command adds --build: the same build as above, which this engine (no bridge network,
# the build's way out through a proxy) cannot repeat from Compose; so the image built above is used.
SECONDS=0
compose up -d >"$work/compose-up" 2>&1 || fail "docker-compose up: $(tail -5 "$work/compose-up")"
compose_ready() {
    output_has '"ygbridge.ready"' compose logs --no-color ygbridge && return
    output_has ' Up ' compose ps || fail "the Compose service exited: $(compose logs --no-color --tail 5 ygbridge 2>&1)"
    return 1
}
wait_for 300 compose_ready || fail "the Compose service was not ready after ${SECONDS}s"
echo "Compose service ready after ${SECONDS}s"
output_has 'wrote the default configuration' compose logs --no-color ygbridge ||
    fail "the Compose service wrote no default configuration into its volume"
[ "$(compose exec -T ygbridge id -u)" != 0 ] || fail "the Compose service runs as root"
echo "$password" | compose exec -T ygbridge ygbridge user add carol --password-stdin >"$work/compose-user" ||
    fail "user add in the Compose service: $(cat "$work/compose-user")"
address=$(compose exec -T ygbridge ygbridge address carol)
compose exec -T ygbridge python - carol "$password" "$address" <"$here/tests/system/mail_roundtrip.py"
compose down --volumes >"$work/compose-down" 2>&1 || fail "docker-compose down: $(cat "$work/compose-down")"

log "check-container: all passed"
