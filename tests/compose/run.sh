#!/usr/bin/env bash
# compose.yaml's cluster in real containers, driven from outside by tests/compose/'s scenario.
#
#   bash tests/compose/run.sh [PYTEST ARGS...]      (as root, on Debian bookworm; .ci/run runs it)
#
# No Docker engine runs on our machines and no image registry can be reached, so this script
# brings its own: podman's Docker-compatible API service (runc, netavark) under a private
# containers.conf, a Debian bookworm base image made with mmdebstrap from Debian packages
# (passed to the Dockerfile as --build-arg PYTHON; the Dockerfile's default stays Docker Hub's
# python image), docker-compose to build the images, and a stand-in for the timers that run
# HEALTHCHECKs under systemd. The scenario itself runs `compose up` and `compose down`. On any
# exit this script removes the project's containers, networks and volumes, and stops what it
# started, by PID. When the engine cannot start, it fails with the reason: it never skips.
#
# Set the state directory with KDNS_COMPOSE_STATE (default: a new one under /tmp), and the
# Python that has pytest and kdns's test extra with PYTHON (default: python). The base
# image is kept between runs (`podman image rm` it to rebuild; its tag names what it was
# made from, so a change there makes a new one).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "tests/compose/run.sh: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (podman runs rootful here, and Debian packages are installed)"
python=${PYTHON:-python}
"$python" -c 'import pytest, dns.resolver, kdns' 2>/dev/null \
  || fail "$python cannot import pytest, dnspython and kdns: run \`pip install '.[test]'\` first"

# Logs, the engine's configuration and its socket; a directory this script made is removed
# after a run that passed.
if [ -n "${KDNS_COMPOSE_STATE:-}" ]; then
  state=$KDNS_COMPOSE_STATE made_state=''
  mkdir -p "$state"
else
  state=$(mktemp -d /tmp/kdns-compose.XXXXXX) made_state=1
fi

# --- the engine's packages ------------------------------------------------------------------
# catatonit: compose's `init: true`; curl: asking the API service whether it is up.
packages=(podman runc conmon netavark aardvark-dns iptables catatonit mmdebstrap docker-compose curl)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$state/apt.log" 2>&1 \
    || fail "cannot install ${missing[*]}: $(tail -5 "$state/apt.log")"
fi

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-kdns-compose-test}
# docker-compose builds through the API itself, not through a `docker` program that may be
# missing or speak to another engine.
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0

# --- a private podman configuration ---------------------------------------------------------
# runc: crun fails on these hosts' hybrid cgroups. cgroupfs and a file event log: there is no
# systemd. A container's ulimits may not exceed its engine's hard limits (runc cannot raise
# them, and podman's default of 1048576 is above them): nofile is this shell's; podman lowers
# its own nproc (to 32768 here), so the containers, which run a handful of processes, get 4096.
nofile=$(ulimit -Hn)
[ "$nofile" != unlimited ] || nofile=1048576
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
export CONTAINERS_CONF=$state/containers.conf
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
init_path = "$(command -v catatonit)"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$state/events.log"

[network]
network_backend = "netavark"
EOF

service_pid='' health_pid=''
cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$health_pid" ]; then
    kill "$health_pid" 2>/dev/null || true
    wait "$health_pid" 2>/dev/null || true
  fi
  if [ -n "$service_pid" ]; then
    # The scenario ends with `compose down`; this is for a run that stopped half-way.
    if kill -0 "$service_pid" 2>/dev/null; then
      timeout 120 docker-compose -f compose.yaml down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 \
        || say "docker-compose down failed during clean-up"
    fi
    kill "$service_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$service_pid" 2>/dev/null; then
      say "podman system service ($service_pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$service_pid" 2>/dev/null || true
    fi
    wait "$service_pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ]; then
    say "failed (exit $status); logs in $state"
  elif [ -n "$made_state" ]; then
    rm -rf "$state"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the Docker-compatible API --------------------------------------------------------------
socket=$state/podman.sock
rm -f "$socket"
podman system service --time=0 "unix://$socket" >"$state/service.log" 2>&1 &
service_pid=$!
export DOCKER_HOST=unix://$socket
for _ in $(seq 150); do
  kill -0 "$service_pid" 2>/dev/null || fail "podman system service exited: $(tail -5 "$state/service.log")"
  curl -fsS --unix-socket "$socket" http://engine/_ping >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --unix-socket "$socket" http://engine/_ping >/dev/null 2>&1 \
  || fail "podman system service did not answer on $socket within 15 s: $(tail -5 "$state/service.log")"
# Left by a run that was killed before its clean-up: nothing of it may stay.
docker-compose -f compose.yaml down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true

# --- the base image, from Debian packages ---------------------------------------------------
# What the build needs of this host to reach the package mirrors: its Debian sources, the apt
# options that reach them (a snapshot mirror's Release files are past their Valid-Until, a
# proxy), its extra certificate authorities, and pip's index.
sources=/etc/apt/sources.list.d/debian.sources
[ -s "$sources" ] || sources=/etc/apt/sources.list
[ -s "$sources" ] || fail "no Debian sources on this host (/etc/apt/sources.list.d/debian.sources, /etc/apt/sources.list)"
aptopts=()
while IFS= read -r line; do aptopts+=(--aptopt="$line"); done < <(
  apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' || true)
pip_conf=$state/pip.conf
index=${PIP_INDEX_URL:-$("$python" -m pip config get global.index-url 2>/dev/null || true)}
trusted=${PIP_TRUSTED_HOST:-$("$python" -m pip config get global.trusted-host 2>/dev/null || true)}
{
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  # Only an index that a container can reach: file:// indexes and find-links stay on the host.
  case "$index" in http://*|https://*) echo "index-url = $index" ;; esac
  [ -z "$trusted" ] || echo "trusted-host = $trusted"
} >"$pip_conf"
cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${cas[0]}" ] || cas=()
packages_in_base=python3,python3-pip,python3-venv,ca-certificates
tag=$(cat "$sources" "$pip_conf" ${cas[@]+"${cas[@]}"} <(printf '%s\n' "$packages_in_base" ${aptopts[@]+"${aptopts[@]}"}) \
  | sha256sum | cut -c1-12)
base=localhost/kdns-base:bookworm-$tag
if podman image exists "$base"; then
  say "base image $base: kept from an earlier run"
else
  say "building the base image $base with mmdebstrap"
  started=$SECONDS
  # EXTERNALLY-MANAGED removed: the image is the environment, as in Docker Hub's python image.
  # (The hooks are run by mmdebstrap, with the root directory as $1.)
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --mode=root --format=tar --include="$packages_in_base" \
    ${aptopts[@]+"${aptopts[@]}"} \
    --customize-hook="upload $pip_conf /etc/pip.conf" \
    ${cas[@]+"--customize-hook=copy-in ${cas[*]} /usr/local/share/ca-certificates/"} \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='for name in python python3; do ln -sf /usr/bin/python3 "$1/usr/local/bin/$name"; done' \
    --customize-hook='ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
    bookworm - "$sources" 2>"$state/mmdebstrap.log" \
    | podman import --change 'CMD ["python3"]' - "$base" >/dev/null 2>"$state/import.log" \
    || fail "cannot build the base image: $(tail -5 "$state/mmdebstrap.log" "$state/import.log")"
  say "base image built in $((SECONDS - started)) s"
fi

# --- the project's images, and the health checks systemd would run -------------------------
started=$SECONDS
docker-compose -f compose.yaml build --build-arg "PYTHON=$base" >"$state/build.log" 2>&1 \
  || fail "docker-compose build failed: $(tail -20 "$state/build.log")"
say "images built in $((SECONDS - started)) s"

# Docker runs each HEALTHCHECK on its interval; podman leaves that to systemd timers, which
# these machines do not have. Containers not yet healthy are checked every second, the others
# every fifth: enough for compose's depends_on and for the scenario, at little CPU.
(
  round=0
  while sleep 1; do
    round=$((round + 1))
    filters=(--filter health=starting --filter health=unhealthy)
    [ $((round % 5)) = 0 ] && filters+=(--filter health=healthy)
    for id in $(podman ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" "${filters[@]}" \
                2>/dev/null); do
      podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
  done
) &
health_pid=$!

# --- the scenario ---------------------------------------------------------------------------
# KDNS_COMPOSE tells the scenario that an engine is up (without it, it skips); with it, it
# must run: a skipped or missing test fails this script as a failed one would.
export KDNS_COMPOSE=podman
report=$state/junit.xml
# xunit1: the report keeps the figures the scenario measures (record_property), printed below.
"$python" -m pytest -p no:cacheprovider -q -o junit_family=xunit1 --junitxml="$report" tests/compose "$@"
"$python" - "$report" <<'EOF' || fail "the scenario did not run in full"
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
for prop in suite.iter("property"):
    print(f"tests/compose/run.sh: {prop.get('name')} = {prop.get('value')}")
tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
if tests == 0 or skipped:
    sys.exit(f"tests/compose/run.sh: {tests} tests ran, {skipped} skipped: the engine is up, nothing may skip")
EOF
