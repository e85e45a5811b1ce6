# kdns as a small image: `kdns serve`, configured by KDNS_* environment variables (each
# `kdns serve` flag has one: --dns-port is KDNS_DNS_PORT), as a non-root user that may bind
# port 53. The compose test cluster (compose.yaml) builds it, and its `client` stage.
#
#   docker build -t kdns .
#   docker run --rm -e KDNS_API_TOKEN=secret -p 127.0.0.1:10053:53/udp -p 127.0.0.1:10053:53/tcp kdns
#
# Manifests: the example cluster is built in; mount others and point KDNS_MANIFESTS at them.
#
# PYTHON is the base image of every stage: a Debian bookworm with Python 3.11 whose `python`
# and `pip` are on PATH. Where Docker Hub cannot be reached, build one and pass it with
# `--build-arg PYTHON=...` (tests/compose/run.sh does, from Debian packages).
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
# The wheels of kdns and of everything it needs: the last stage installs from them alone.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[speed]" \
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
# kdns and its dependencies from the wheels built above, and from nowhere else (--no-index: no
# package of the same name on an index can stand in for them). iproute2 for the libraries
# kdns-ip needs. The group is made first: `useradd --system --user-group` would give it a
# system gid, not 10001.
# hadolint ignore=DL3008,DL3013
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --no-index --find-links /tmp/wheels "kdns[speed]" \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 kdns \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kdns --create-home \
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
# /healthz needs no token. The API listens on every address unless KDNS_API_ADDRESS names one,
# over https when KDNS_TLS_CERT is set (its certificate is not checked: this is kdns asking
# itself whether it answers).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as u; e = os.environ.get; a = e('KDNS_API_ADDRESS', '127.0.0.1'); a = '127.0.0.1' if a in ('0.0.0.0', '::') else a; a = '[%s]' % a if ':' in a else a; s = 'https' if e('KDNS_TLS_CERT') else 'http'; u.urlopen('%s://%s:%s/healthz' % (s, a, e('KDNS_API_PORT', '8080')), timeout=2, context=ssl._create_unverified_context())"]
ENTRYPOINT ["/usr/local/bin/kdns-python", "-m", "kdns"]
CMD ["serve"]
