#!/usr/bin/env bash
# Install and start ygbridge on this Debian machine (as root), beside a yggdrasil router.
#   sudo scripts/setup-node.sh [USER]      # first user, default "$SUDO_USER" or "me"
# The first user's password is read from $YGBRIDGE_PASSWORD or asked for.
# Installs and starts yggdrasil (bookworm-backports, 0.5.x) only if no router answers yet.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
user=${1:-${SUDO_USER:-me}}
prefix=/opt/ygbridge
config=/etc/ygbridge/ygbridge.ini

router_answers() {
    for sock in /var/run/yggdrasil/yggdrasil.sock /var/run/yggdrasil.sock; do
        if [ -S "$sock" ] && yggdrasilctl -endpoint "unix://$sock" getself >/dev/null 2>&1; then
            echo "$sock"
            return 0
        fi
    done
    return 1
}

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${need[@]}" >/dev/null
fi
if ! command -v yggdrasil >/dev/null; then
    apt-get update -q
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
        apt-get install -y -q yggdrasil >/dev/null
    fi
fi

if ! sock=$(router_answers); then
    echo "starting a local yggdrasil router"
    if [ -d /run/systemd/system ]; then
        systemctl enable --now yggdrasil
    else
        mkdir -p /etc/yggdrasil /var/run/yggdrasil
        [ -s /etc/yggdrasil/yggdrasil.conf ] || yggdrasil -genconf >/etc/yggdrasil/yggdrasil.conf
        sed -i 's#^\(\s*AdminListen:\).*#\1 unix:///var/run/yggdrasil/yggdrasil.sock#' /etc/yggdrasil/yggdrasil.conf
        nohup yggdrasil -useconffile /etc/yggdrasil/yggdrasil.conf >>/var/log/yggdrasil.log 2>&1 &
    fi
    for _ in $(seq 50); do sock=$(router_answers) && break; sleep 0.2; done
    [ -n "${sock:-}" ] || { echo "yggdrasil did not start: see /var/log/yggdrasil.log" >&2; exit 1; }
fi

python3 -m venv "$prefix"
"$prefix/bin/pip" install -q "$here"
ln -sf "$prefix/bin/ygbridge" /usr/local/bin/ygbridge
mkdir -p /etc/ygbridge /var/lib/ygbridge
if [ ! -f "$config" ]; then
    sed "s#^; admin = .*#admin = unix://$sock#" "$here/conf/ygbridge.ini" >"$config"
fi
ygbridge --config "$config" init
if ! ygbridge --config "$config" user list | grep -qx "$user"; then
    if [ -n "${YGBRIDGE_PASSWORD:-}" ]; then
        printf '%s\n' "$YGBRIDGE_PASSWORD" | ygbridge --config "$config" user add "$user" --password-stdin
    else
        ygbridge --config "$config" user add "$user"
    fi
fi

if [ -d /run/systemd/system ]; then
    cp "$here/conf/ygbridge.service" /etc/systemd/system/ygbridge.service
    systemctl daemon-reload
    systemctl enable --now ygbridge
else
    pkill -f "twistd.*ygbridge --config $config" || true
    nohup "$prefix/bin/twistd" --nodaemon --pidfile= --logger ygbridge.logs.observer \
        ygbridge --config "$config" >>/var/log/ygbridge.log 2>&1 &
    for _ in $(seq 50); do grep -q '"ygbridge.ready"' /var/log/ygbridge.log 2>/dev/null && break; sleep 0.2; done
fi

echo
echo "Your address:    $(ygbridge --config "$config" address "$user")"
echo "IMAP:            127.0.0.1 port 1143, user $user, STARTTLS (plain login allowed on loopback)"
echo "SMTP submission: 127.0.0.1 port 1025, user $user, STARTTLS, password authentication"
echo "Delta Chat link: ygbridge --config $config login-link $user"
echo "Node status:     ygbridge --config $config status"
