# kdns as a small image: `kdns serve`, configured by KDNS_* environment variables (each
# `kdns serve` flag has one: --dns-port is KDNS_DNS_PORT), as a non-root user that may bind
# port 53. The compose test cluster (compose.yaml) builds it, and its `client` stage.
#
#   docker build -t kdns .
#   docker run --rm -e KDNS_API_TOKEN=secret -p 127.0.0.1:10053:53/udp kdns
#
# Manifests: the example cluster is built in; mount others and point KDNS_MANIFESTS at them.

ARG PYTHON=python:3.11-slim-bookworm

# --- build: the kdns wheel, and an interpreter allowed to bind ports below 1024 ------------
FROM ${PYTHON} AS build
# Only this stage has setcap; nothing of it but the files copied below is kept.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin iproute2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kdns/ kdns/
COPY zones/ zones/
# A copy of the interpreter with CAP_NET_BIND_SERVICE for kdns alone (as CoreDNS's image
# does for its binary): other Python programs in the image get no capability. And a copy of
# `ip` with CAP_NET_ADMIN, which `kdns serve --proxy` runs to add ClusterIPs to eth0 (the
# container must be given NET_ADMIN too: compose's cap_add).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && cp "$(readlink -f /usr/local/bin/python3)" /usr/local/bin/kdns-python \
    && setcap cap_net_bind_service=+ep /usr/local/bin/kdns-python \
    && cp /usr/sbin/ip /usr/local/bin/kdns-ip \
    && setcap cap_net_admin=+ep /usr/local/bin/kdns-ip

# --- client: the compose cluster's client container, with dig and curl ---------------------
FROM ${PYTHON} AS client
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends dnsutils curl \
    && rm -rf /var/lib/apt/lists/*
CMD ["sleep", "infinity"]

# --- kdns (the default target) -------------------------------------------------------------
FROM ${PYTHON}
COPY --from=build /wheels/ /tmp/wheels/
# kdns is the wheel built above; its dependencies are those pyproject.toml names. iproute2
# for the libraries kdns-ip needs.
# hadolint ignore=DL3008,DL3013
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --find-links /tmp/wheels "kdns[speed]" \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/kdns --create-home \
        --shell /usr/sbin/nologin kdns
COPY --from=build /usr/local/bin/kdns-python /usr/local/bin/kdns-ip /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/kdns
# 0.0.0.0: every address of the container. The API beyond loopback needs KDNS_API_TOKEN,
# which has no default: kdns refuses to start without one.
ENV KDNS_DNS_ADDRESS=0.0.0.0 \
    KDNS_DNS_PORT=53 \
    KDNS_API_ADDRESS=0.0.0.0 \
    KDNS_API_PORT=8080 \
    KDNS_DATA_DIR=/var/lib/kdns \
    PYTHONUNBUFFERED=1
EXPOSE 53/udp 53/tcp 8080/tcp
# /healthz needs no token. The API listens on every address unless KDNS_API_ADDRESS names one.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; a = os.environ.get('KDNS_API_ADDRESS', '127.0.0.1'); a = '127.0.0.1' if a in ('0.0.0.0', '::') else a; a = '[%s]' % a if ':' in a else a; u.urlopen('http://%s:%s/healthz' % (a, os.environ.get('KDNS_API_PORT', '8080')), timeout=2)"]
ENTRYPOINT ["/usr/local/bin/kdns-python", "-m", "kdns"]
CMD ["serve"]
