# ygbridge beside a yggdrasil router on the host (see README "Docker"):
#   docker build -t ygbridge .
#   docker run -d --name ygbridge --network host \
#     -v /var/run/yggdrasil:/var/run/yggdrasil -v ygbridge-data:/var/lib/ygbridge \
#     --group-add "$(stat -c %g /var/run/yggdrasil/yggdrasil.sock)" ygbridge
# The base image may be any Debian-like image with python3 (3.11+) and its venv module:
#   docker build --build-arg BASE=debian:bookworm-slim -t ygbridge .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# python3-venv and libcap2-bin where the base image lacks them (Debian's own python3).
RUN set -eu; \
    missing=""; \
    command -v python3 >/dev/null && python3 -c 'import ensurepip' 2>/dev/null || missing="python3 python3-venv"; \
    command -v setcap >/dev/null || missing="$missing libcap2-bin"; \
    if [ -n "$missing" ]; then \
        apt-get update -q && apt-get install -y -q --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --system --user-group --home-dir /var/lib/ygbridge --shell /usr/sbin/nologin ygbridge

COPY . /src
RUN set -eu; \
    python3 -m venv /opt/ygbridge; \
    /opt/ygbridge/bin/pip install --no-cache-dir /src; \
    /opt/ygbridge/bin/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'; \
    # A copy of the interpreter that may bind port 25 (the mesh port) without root.
    cp "$(readlink -f /opt/ygbridge/bin/python3)" /opt/ygbridge/bin/python-net; \
    setcap cap_net_bind_service=+ep /opt/ygbridge/bin/python-net; \
    install -D -m 0644 /src/conf/ygbridge.ini /opt/ygbridge/share/ygbridge.ini; \
    install -m 0755 /src/scripts/docker-entrypoint.sh /usr/local/bin/ygbridge-container; \
    install -d -m 0700 -o ygbridge -g ygbridge /var/lib/ygbridge; \
    rm -rf /src

ENV PATH=/opt/ygbridge/bin:$PATH YGBRIDGE_CONFIG=/var/lib/ygbridge/ygbridge.ini
USER ygbridge
WORKDIR /var/lib/ygbridge
VOLUME ["/var/lib/ygbridge"]
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ygbridge --config "$YGBRIDGE_CONFIG" status >/dev/null || exit 1
CMD ["ygbridge-container"]
