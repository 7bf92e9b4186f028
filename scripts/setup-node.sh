#!/usr/bin/env bash
# Install and start ygbridge on this Debian machine (as root), beside a yggdrasil router.
#   sudo scripts/setup-node.sh [USER]      # first user, default "$SUDO_USER" or "me"
# The first user's password is read from $YGBRIDGE_PASSWORD or asked for on the terminal.
# If no router answers yet, installs yggdrasil (bookworm-backports, 0.5.x), writes
# /etc/yggdrasil/yggdrasil.conf when there is none (an existing one is kept as it is) and starts
# it: as yggdrasil.service under systemd, else as a background process.
# ygbridge runs as the unprivileged "ygbridge" user, a member of the router socket's group, with
# only CAP_NET_BIND_SERVICE (for the mesh port 25). Running the script again is safe: it keeps
# the configuration, the database and the users, and restarts the service with this code.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
user=${1:-${SUDO_USER:-me}}
prefix=/opt/ygbridge
config=/etc/ygbridge/ygbridge.ini
state=/var/lib/ygbridge
ygg_conf=/etc/yggdrasil/yggdrasil.conf
ygg_sock=/var/run/yggdrasil/yggdrasil.sock
service_user=ygbridge

fail() { echo "setup-node.sh: $*" >&2; exit 1; }
systemd_runs() { [ -d /run/systemd/system ]; }

[ "$(id -u)" = 0 ] || fail "run me as root (sudo $0 $*)"
if [ -z "${YGBRIDGE_PASSWORD:-}" ] && [ ! -t 0 ]; then
    no_terminal=1
else
    no_terminal=
fi

router_answers() {
    local sock
    for sock in /var/run/yggdrasil/yggdrasil.sock /var/run/yggdrasil.sock; do
        if [ -S "$sock" ] && yggdrasilctl -endpoint "unix://$sock" getself >/dev/null 2>&1; then
            echo "$sock"
            return 0
        fi
    done
    return 1
}

router_log_hint() {
    if systemd_runs; then
        echo "journalctl -u yggdrasil --no-pager -n 30"
    else
        echo "/var/log/yggdrasil.log"
    fi
}

# --- packages --------------------------------------------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${need[@]}" >/dev/null
fi
if ! command -v yggdrasil >/dev/null; then
    if grep -q bookworm /etc/os-release; then
        cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -q
        apt-get install -y -q -t bookworm-backports yggdrasil >/dev/null
    else
        apt-get update -q
        apt-get install -y -q yggdrasil >/dev/null
    fi
fi

# --- the router ------------------------------------------------------------------------------
if ! sock=$(router_answers); then
    getent group yggdrasil >/dev/null || groupadd --system yggdrasil
    getent passwd yggdrasil >/dev/null ||
        useradd --system --gid yggdrasil --home-dir /var/lib/yggdrasil --no-create-home \
            --shell /usr/sbin/nologin yggdrasil
    if [ ! -s "$ygg_conf" ]; then
        # Debian's package ships no configuration: a new node key, and the admin socket where the
        # packaged unit (User=yggdrasil, RuntimeDirectory=yggdrasil) may create it.
        echo "writing a new router configuration: $ygg_conf"
        install -d -m 0750 -o root -g yggdrasil /etc/yggdrasil
        (umask 027 && yggdrasil -genconf >"$ygg_conf.new")
        # (0.4 writes an AdminListen line; 0.5 leaves it out, meaning /var/run/yggdrasil.sock)
        if grep -q '^\s*AdminListen:' "$ygg_conf.new"; then
            sed -i "s#^\(\s*AdminListen:\).*#\1 unix://$ygg_sock#" "$ygg_conf.new"
        else
            sed -i "0,/^{/s##{\n  AdminListen: unix://$ygg_sock#" "$ygg_conf.new"
        fi
        chgrp yggdrasil "$ygg_conf.new"
        mv "$ygg_conf.new" "$ygg_conf"
    fi
    # The router runs as yggdrasil (as Debian's unit has it): it must be able to read its config.
    if ! runuser -u yggdrasil -- test -r "$ygg_conf"; then
        echo "letting the yggdrasil group read $ygg_conf (its content is kept)"
        chgrp yggdrasil "$(dirname "$ygg_conf")" "$ygg_conf"
        chmod g+rx "$(dirname "$ygg_conf")"
        chmod g+r "$ygg_conf"
    fi
    echo "starting the yggdrasil router"
    if systemd_runs; then
        systemctl enable yggdrasil.service >/dev/null 2>&1
        # After an earlier failure (a configuration since mended) it may have hit its start limit.
        systemctl reset-failed yggdrasil.service 2>/dev/null || true
        systemctl restart yggdrasil.service ||
            fail "yggdrasil.service did not start: see $(router_log_hint)"
        restarts=$(systemctl show -p NRestarts --value yggdrasil.service)
        # Stopped, failed, or restarted by its unit's Restart= since: it does not run.
        router_stopped() {
            ! systemctl is-active --quiet yggdrasil.service ||
                [ "$(systemctl show -p NRestarts --value yggdrasil.service)" != "$restarts" ]
        }
    else
        # As under systemd: the yggdrasil user, with only the capabilities a router needs.
        install -d -m 0755 -o yggdrasil -g yggdrasil /var/run/yggdrasil
        touch /var/log/yggdrasil.log
        nohup setpriv --reuid=yggdrasil --regid=yggdrasil --init-groups \
            --inh-caps=+net_admin,+net_bind_service --ambient-caps=+net_admin,+net_bind_service \
            yggdrasil -useconffile "$ygg_conf" >>/var/log/yggdrasil.log 2>&1 </dev/null &
        router_pid=$!
        router_stopped() { ! kill -0 "$router_pid" 2>/dev/null; }
    fi
    # Until its admin socket answers; at once if the router stops (a configuration it rejects).
    for _ in $(seq 100); do
        sock=$(router_answers) && break
        router_stopped && fail "the yggdrasil router stopped (is $ygg_conf valid?): see $(router_log_hint)"
        sleep 0.2
    done
    [ -n "${sock:-}" ] ||
        fail "yggdrasil did not answer on its admin socket (AdminListen in $ygg_conf): see $(router_log_hint)"
fi

# --- the service's user: in the group that may use the router's admin socket ------------------
sock_group=$(stat -c %G "$sock")
getent group "$service_user" >/dev/null || groupadd --system "$service_user"
getent passwd "$service_user" >/dev/null ||
    useradd --system --gid "$service_user" --home-dir "$state" --no-create-home \
        --shell /usr/sbin/nologin "$service_user"
if [ "$sock_group" != root ]; then
    usermod -a -G "$sock_group" "$service_user"
fi
as_service() { runuser -u "$service_user" -- "$@"; }
as_service yggdrasilctl -endpoint "unix://$sock" getself >/dev/null 2>&1 ||
    fail "the $service_user user may not use the router's admin socket $sock (owner $(stat -c %U:%G "$sock"), mode $(stat -c %a "$sock")): run yggdrasil with a group of its own (Group= in its unit) and run me again"

# --- ygbridge itself -------------------------------------------------------------------------
python3 -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check "$here"
# twistd's plugin cache, written now: the service may not write into /opt.
"$prefix/bin/python" -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
# `ygbridge` for the administrator: as the service's user, so that files it creates are the service's.
cat >/usr/local/bin/ygbridge <<EOF
#!/bin/sh
# ygbridge's command, run as the $service_user user (installed by setup-node.sh).
if [ "\$(id -u)" = 0 ]; then
    exec runuser -u $service_user -- $prefix/bin/ygbridge "\$@"
fi
exec $prefix/bin/ygbridge "\$@"
EOF
chmod 755 /usr/local/bin/ygbridge

install -d -m 0750 -o root -g "$service_user" /etc/ygbridge
if [ ! -f "$config" ]; then
    sed "s#^; admin = .*#admin = unix://$sock#" "$here/conf/ygbridge.ini" >"$config.new"
    mv "$config.new" "$config"
fi
chown root:"$service_user" "$config"
chmod 0640 "$config"
# The state is the service's alone (also after an older version ran everything as root).
install -d -m 0700 -o "$service_user" -g "$service_user" "$state"
chown -R "$service_user:$service_user" "$state"
find "$state" -type f -exec chmod 0600 {} +

ygbridge --config "$config" init
if ! ygbridge --config "$config" user list | grep -x "$user" >/dev/null; then  # grep reads it all: no SIGPIPE under pipefail
    if [ -n "${YGBRIDGE_PASSWORD:-}" ]; then
        printf '%s\n' "$YGBRIDGE_PASSWORD" | ygbridge --config "$config" user add "$user" --password-stdin
    elif [ -n "$no_terminal" ]; then
        fail "no terminal to ask for $user's password: run me again with YGBRIDGE_PASSWORD=... in the environment"
    else
        ygbridge --config "$config" user add "$user"
    fi
fi

# --- the service -----------------------------------------------------------------------------
if systemd_runs; then
    install -m 0644 "$here/conf/ygbridge.service" /etc/systemd/system/ygbridge.service
    systemctl daemon-reload
    systemctl enable ygbridge.service >/dev/null 2>&1
    started=$(date +%s)
    systemctl restart ygbridge.service
    ready() { journalctl -u ygbridge.service --since "@$started" -o cat 2>/dev/null | grep '"ygbridge.ready"' >/dev/null; }
    log_hint="journalctl -u ygbridge --no-pager -n 30"
else
    pidfile=/var/run/ygbridge.pid
    if [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
    fi
    (umask 077 && touch /var/log/ygbridge.log)
    offset=$(wc -c </var/log/ygbridge.log)
    (
        umask 077
        nohup setpriv --reuid="$service_user" --regid="$service_user" --init-groups --no-new-privs \
            --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
            "$prefix/bin/twistd" --nodaemon --pidfile= --umask 0077 --logger ygbridge.logs.observer \
            ygbridge --config "$config" >>/var/log/ygbridge.log 2>&1 </dev/null &
        echo $! >"$pidfile"
    )
    ready() { tail -c +"$((offset + 1))" /var/log/ygbridge.log | grep '"ygbridge.ready"' >/dev/null; }
    log_hint="/var/log/ygbridge.log"
fi
for _ in $(seq 150); do ready && break; sleep 0.2; done
ready || fail "ygbridge did not start: see $log_hint"

address=$(ygbridge --config "$config" address "$user")
echo
echo "ygbridge runs as user $service_user (config $config, state $state)."
echo "Your address:    $address"
echo "IMAP:            127.0.0.1 port 1143, user $user, STARTTLS (plain login allowed on loopback)"
echo "SMTP submission: 127.0.0.1 port 1025, user $user, STARTTLS, password authentication"
echo "Delta Chat link: ygbridge --config $config login-link $user"
echo "Node status:     ygbridge --config $config status"
if grep -Eqs '^\s*Peers:\s*\[\s*\]' "$ygg_conf"; then
    echo
    echo "The router has no configured peers: it reaches only nodes on this LAN (multicast)."
    echo "To join the public mesh, add a few public peers near you (listed at"
    echo "github.com/yggdrasil-network/public-peers) to Peers: [ ... ] in $ygg_conf, e.g."
    echo "  Peers: [ \"tls://HOST:PORT\" ]"
    if systemd_runs; then
        echo "then: systemctl restart yggdrasil"
    else
        echo "then restart yggdrasil (it runs without systemd here: kill it and run me again)"
    fi
fi
