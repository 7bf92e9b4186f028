# ygbridge beside a yggdrasil router on the host:
#   docker run --network host -v /var/run/yggdrasil:/var/run/yggdrasil \
#     -v ygbridge-data:/var/lib/ygbridge -v /etc/ygbridge:/etc/ygbridge ygbridge
FROM python:3.11-slim-bookworm
WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir /src \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && mkdir -p /etc/ygbridge /var/lib/ygbridge \
 && cp -n conf/ygbridge.ini /etc/ygbridge/ygbridge.ini
VOLUME ["/var/lib/ygbridge"]
CMD ["sh", "-c", "ygbridge --config /etc/ygbridge/ygbridge.ini init && exec twistd --nodaemon --pidfile= --logger ygbridge.logs.observer ygbridge --config /etc/ygbridge/ygbridge.ini"]
