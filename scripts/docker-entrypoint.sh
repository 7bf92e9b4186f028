#!/bin/sh
# The container's command: on first start, write the default configuration into the state volume
# (database beside it), then create the database and certificate, then run the service.
# Runs as the unprivileged ygbridge user; only /var/lib/ygbridge (the volume) is written.
set -eu
state=/var/lib/ygbridge
config=${YGBRIDGE_CONFIG:-$state/ygbridge.ini}
umask 077
if [ ! -e "$config" ]; then
    sed 's#^database = .*#database = sqlite:///ygbridge.db#' /opt/ygbridge/share/ygbridge.ini >"$config.new"
    mv "$config.new" "$config"
    echo "wrote the default configuration to $config: edit it there and restart the container"
fi
ygbridge --config "$config" init
exec /opt/ygbridge/bin/python-net -c 'from twisted.scripts.twistd import run; run()' \
    --nodaemon --pidfile= --umask 0077 --logger ygbridge.logs.observer ygbridge --config "$config"
