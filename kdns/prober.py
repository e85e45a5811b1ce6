"""The readiness prober: kdns runs the readinessProbe of the Pods it stores, as a kubelet would.

kdns plays the whole control plane, and for pods that register themselves (`kdns register`)
it also plays the kubelet's prober. `async with Prober(backend):` watches the store for Pods
whose containers have a readinessProbe, probes them, and writes the Pod's Ready (and
ContainersReady) condition back through the backend (registry/backend.py) when, and only
when, it changes; the EndpointSlice controller and the DNS index follow in the same commit.

The semantics are the kubelet's (pkg/kubelet/prober/worker.go, pkg/probe/{tcp,http}):

* one worker per container with a readinessProbe, probing `host` (default: the pod IP);
* the first probe runs initialDelaySeconds after kdns first sees the pod (or its new IP or
  probe), then one every periodSeconds; a tick that comes while a probe is still running
  is not lost but runs as soon as that probe ends, as with the kubelet's time.Ticker;
* a probe that has not finished after timeoutSeconds fails; and one whose TCP connection is
  not made within half a period fails then, when that is sooner (below);
* a container turns ready after successThreshold successes in a row, and not ready after
  failureThreshold failures in a row; before that it keeps the pod's stored readiness;
* the pod is Ready when every probed container is (containers without a probe count as
  ready, as the kubelet counts a running container without one);
* tcpSocket succeeds when the connection is made; httpGet when the status is 200-399
  (redirects are not followed, where the kubelet follows those to the same host).

So a pod whose server dies leaves DNS at most failureThreshold x periodSeconds later when
its address refuses connections (the process died). When the address no longer answers at
all (the container and its address went away: a SYN gets nothing back), each probe waits
for its connection, and the kubelet would wait the whole timeoutSeconds; kdns waits at most
half a period, min(timeoutSeconds, periodSeconds / 2), so that the bound is failureThreshold
x periodSeconds plus that, 2.5 s for periodSeconds 1 and failureThreshold 2 where timeouts
would make it 3. A live pod loses little by it: its kernel answers a SYN within a round trip
however busy its app is; only a lost SYN, sent again a second later (Linux's first
retransmission), makes a handshake longer, and that fails a 1 s timeout too. The rest of
timeoutSeconds is the answer's. tests/test_prober.py measures both bounds. exec and grpc probes cannot run here (kdns has no
container runtime): such a pod is reported not Ready with reason UnsupportedProbe and a
message saying why, and a warning is logged, once per pod.

Pods that are not Running, have no IP, are being deleted, or have no readinessProbe are
left alone, so hand-written status (zones/workloads.yaml) is never overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from kdns import __version__
from kdns.errors import KdnsError
from kdns.hostport import join_host_port
from kdns.registry.admission import timestamp
from kdns.registry.backend import Backend, NotLeader, Unavailable
from kdns.registry.errors import RegistryError
from kdns.registry.events import EventLog
from kdns.registry.manifests import to_manifest
from kdns.registry.objects import DELETED, POD, Event, KubeObject, Pod, may_mention

__all__ = ["Probe", "ProbeStats", "Prober", "UnsupportedProbe", "probes_of"]

log = logging.getLogger("kdns.prober")


class UnsupportedProbe(KdnsError):
    """This readiness probe cannot run in kdns."""


# Kubernetes' defaults and minimums (k8s.io/api/core/v1 Probe; pkg/apis/core/v1/defaults.go).
DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
MINIMUMS = {"initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1,
            "failureThreshold": 1}
# How much of a response an httpGet probe reads (the kubelet reads at most 10 KiB of body).
HTTP_READ_LIMIT = 10 * 1024
USER_AGENT = f"kube-probe/kdns-{__version__}"
READY, CONTAINERS_READY = "Ready", "ContainersReady"
UNSUPPORTED = "UnsupportedProbe"
NOT_READY = "ContainersNotReady"
# Probes running at once: bounds the sockets kdns holds open (each probe holds one).
MAX_IN_FLIGHT = 256
# Stored pods looked at in one paced turn (Prober's `pace`): a few ms of the loop (a pod
# without a probe takes 2-5 us: its document searched for "readinessProbe").
SCAN_CHUNK = 500
# TCP probes close with SO_LINGER 0 (an RST): kdns keeps no TIME_WAIT per probe.
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class Probe:
    """One container's readinessProbe, read and checked: what to connect to, and when."""

    container: str
    action: str  # "tcpSocket" or "httpGet"
    port: int
    host: str = ""  # "": the pod IP
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def probes_of(pod: Pod) -> tuple[Probe, ...]:
    """The readiness probes of a pod's containers, in order; () if it has none.

    UnsupportedProbe (its message names the container and field) for an exec or grpc probe,
    or for one kdns cannot read.
    """
    # This reads every pod of the registry when kdns starts: most have no probe, and
    # their documents need not be unpacked to see it.
    if not may_mention(pod, "readinessProbe"):
        return ()
    spec = pod.manifest.get("spec")
    # (`type() is dict` first: isinstance against an ABC is slow.)
    containers = spec.get("containers") if type(spec) is dict or isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        return ()
    probes = []
    for index, container in enumerate(containers):
        if (type(container) is not dict and not isinstance(container, Mapping)) or container.get("readinessProbe") is None:
            continue
        name = str(container.get("name") or f"containers[{index}]")
        probes.append(_probe(name, container, f"spec.containers[{index}].readinessProbe"))
    return tuple(probes)


def _probe(name: str, container: Mapping[str, Any], path: str) -> Probe:
    raw = container["readinessProbe"]
    if not isinstance(raw, Mapping):
        raise UnsupportedProbe(f"container {name}: {path} must be an object")
    for action in ("exec", "grpc"):
        if raw.get(action) is not None:
            raise UnsupportedProbe(
                f"container {name}: {path}.{action}: {action} probes cannot run in kdns, which has no "
                "container runtime; use httpGet or tcpSocket"
            )
    timing: dict[str, int] = {}
    for key, default in DEFAULTS.items():
        value = raw.get(key)
        if value is None or (value == 0 and key != "initialDelaySeconds"):
            value = default  # 0 means "unset" in the API, as the defaulting code treats it
        if not isinstance(value, int) or isinstance(value, bool) or value < MINIMUMS[key]:
            raise UnsupportedProbe(f"container {name}: {path}.{key}: must be an integer of at least {MINIMUMS[key]}")
        timing[key] = value
    actions = [a for a in ("httpGet", "tcpSocket") if raw.get(a) is not None]
    if len(actions) != 1:
        raise UnsupportedProbe(f"container {name}: {path}: must have exactly one of httpGet and tcpSocket")
    action = actions[0]
    handler = raw[action]
    where = f"{path}.{action}"
    if not isinstance(handler, Mapping):
        raise UnsupportedProbe(f"container {name}: {where} must be an object")
    host = handler.get("host") or ""
    if not isinstance(host, str):
        raise UnsupportedProbe(f"container {name}: {where}.host must be a string")
    fields: dict[str, Any] = {}
    if action == "httpGet":
        probe_path = handler.get("path") or "/"
        scheme = handler.get("scheme") or "HTTP"
        if not isinstance(probe_path, str) or any(c in probe_path for c in "\r\n "):
            raise UnsupportedProbe(f"container {name}: {where}.path must be a URL path")
        if scheme not in ("HTTP", "HTTPS"):
            raise UnsupportedProbe(f"container {name}: {where}.scheme must be HTTP or HTTPS")
        headers = []
        for i, header in enumerate(handler.get("httpHeaders") or ()):
            if not isinstance(header, Mapping) or not isinstance(header.get("name"), str):
                raise UnsupportedProbe(f"container {name}: {where}.httpHeaders[{i}] needs a name and a value")
            value = str(header.get("value", ""))
            if any(c in header["name"] + value for c in "\r\n"):
                raise UnsupportedProbe(f"container {name}: {where}.httpHeaders[{i}] must be one line")
            headers.append((header["name"], value))
        fields = {"path": probe_path if probe_path.startswith("/") else "/" + probe_path, "scheme": scheme,
                  "headers": tuple(headers)}
    return Probe(
        container=name,
        action=action,
        port=_port(handler.get("port"), container, f"container {name}: {where}.port"),
        host=host,
        initial_delay=float(timing["initialDelaySeconds"]),
        period=float(timing["periodSeconds"]),
        timeout=float(timing["timeoutSeconds"]),
        success_threshold=timing["successThreshold"],
        failure_threshold=timing["failureThreshold"],
        **fields,
    )


def _port(value: Any, container: Mapping[str, Any], where: str) -> int:
    """A port number, or the name of one of the container's ports (IntOrString)."""
    if isinstance(value, str) and not value.isdigit():
        for port in container.get("ports") or ():
            if isinstance(port, Mapping) and port.get("name") == value:
                value = port.get("containerPort")
                break
        else:
            raise UnsupportedProbe(f"{where}: {value!r} is not the name of a port of the container")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UnsupportedProbe(f"{where}: must be a port number or name") from None
    if not 1 <= number <= 65535:
        raise UnsupportedProbe(f"{where}: must be between 1 and 65535")
    return number


@dataclass(slots=True)
class _Result:
    """The kubelet's result counting for one container: a result holds until the other
    result has come `threshold` times in a row."""

    ready: bool
    success_threshold: int
    failure_threshold: int
    _last: bool | None = None
    _run: int = 0

    def record(self, success: bool) -> bool:
        """Count one probe; True when the container's readiness changed."""
        if success == self._last:
            self._run += 1
        else:
            self._last, self._run = success, 1
        threshold = self.success_threshold if success else self.failure_threshold
        if self._run >= threshold and success != self.ready:
            self.ready = success
            return True
        return False


@dataclass(slots=True)
class _Target:
    """A probed pod: what it was probed for, and each container's result."""

    uid: str
    ip: str
    probes: tuple[Probe, ...]
    refusal: str | None  # why the pod cannot be probed (UnsupportedProbe's message)
    results: dict[str, _Result] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def condition(self) -> tuple[bool, str, str]:
        """(ready, reason, message) of the pod's Ready condition, as the kubelet words it."""
        if self.refusal is not None:
            return False, UNSUPPORTED, self.refusal
        unready = [name for name, result in self.results.items() if not result.ready]
        if not unready:
            return True, "", ""
        return False, NOT_READY, f"containers with unready status: [{' '.join(unready)}]"


@dataclass(slots=True)
class ProbeStats:
    """Counters for measurements and logs; the Prober only adds to them."""

    probes: int = 0
    failures: int = 0
    writes: int = 0  # pods whose Ready condition was written
    commits: int = 0


class Prober:
    """`async with Prober(backend):` probes every pod in `backend.store` that has a
    readinessProbe, and writes their Ready condition through `backend` (fenced: with
    the etcd store, only the holder of the controller lease may).

    `clock` (monotonic seconds) and `sleep` schedule the probes; tests inject both to drive
    time by hand. `wall_clock` dates lastTransitionTime. A probe's own timeout runs on the
    event loop's clock. At most `max_in_flight` probes run at once.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        max_in_flight: int = MAX_IN_FLIGHT,
        events: EventLog | None = None,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`events`, when given, gets a Warning `Unhealthy` event for each failed probe,
        as the kubelet records one. `pace`, when given, paces the first look at the pods
        already stored: they are looked at on a task of their own, SCAN_CHUNK at a time,
        each chunk after `pace()` returns (kdns.app gives the turns DNS leaves quiet, so
        that a big registry's start does not wait for it); without it, all of them in
        `__aenter__`."""
        self._backend = backend
        self._store = backend.store
        self._events = events
        self._writes: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._max_in_flight = max_in_flight
        self._targets: dict[tuple[str, str], _Target] = {}
        self._dirty: dict[tuple[str, str], None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._pace = pace
        self._scan: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None
        self.stats = ProbeStats()

    @property
    def probed(self) -> int:
        """Pods being probed now."""
        return sum(1 for target in self._targets.values() if target.tasks)

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self._max_in_flight)
        # Subscribe and list with no write in between: no pod is missed or seen twice.
        self._unsubscribe = self._store.subscribe(self._on_commit)
        pods = self._store.list(POD)
        if self._pace is None:
            self._look_at(pods)
            log.debug("probing %d pods", self.probed)
        else:
            self._scan = self._loop.create_task(self._paced_scan(pods, self._pace), name="kdns prober: stored pods")
        return self

    async def _paced_scan(self, pods: Sequence[KubeObject], pace: Callable[[], Awaitable[None]]) -> None:
        for start in range(0, len(pods), SCAN_CHUNK):
            await pace()
            self._look_at(pods[start:start + SCAN_CHUNK])
        log.debug("probing %d pods", self.probed)

    def _look_at(self, pods: Sequence[KubeObject]) -> None:
        """Track `pods`, listed when the subscription began, each still stored as listed: a
        commit since then was tracked as it came (`_on_commit`), so a pod it changed or
        deleted is no longer the one the store holds, and is left to it."""
        get = self._store.get
        for pod in pods:
            assert isinstance(pod, Pod)
            if get(POD, pod.meta.namespace, pod.meta.name) is pod:
                self._track(pod)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._unsubscribe is None:
            return
        self._unsubscribe()
        self._unsubscribe = None
        if self._scan is not None:
            self._scan.cancel()
            await asyncio.gather(self._scan, return_exceptions=True)
            self._scan = None
        tasks = [task for target in self._targets.values() for task in target.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._targets.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for write in list(self._writes):
            write.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)
        self._dirty.clear()

    # --- following the store ----------------------------------------------------------------

    def _on_commit(self, events: Sequence[Event]) -> None:
        for event in events:
            pod = event.object
            if not isinstance(pod, Pod):
                continue
            if event.type == DELETED:
                self._forget(pod.meta.namespace, pod.meta.name)
            else:
                self._track(pod)

    def _track(self, pod: Pod) -> None:
        """Start, restart or stop probing `pod`, as its spec and status now ask."""
        key = (pod.meta.namespace, pod.meta.name)
        try:
            probes, refusal = probes_of(pod), None
        except UnsupportedProbe as exc:
            probes, refusal = (), str(exc)
        eligible = (probes or refusal) and pod.phase == "Running" and pod.pod_ips and not pod.meta.deletion_timestamp
        if not eligible:
            self._forget(*key)
            return
        ip = pod.pod_ips[0]
        current = self._targets.get(key)
        if current is not None and (current.uid, current.ip, current.probes, current.refusal) == (
            pod.meta.uid, ip, probes, refusal,
        ):
            return  # only the status changed (most often: our own write)
        self._forget(*key)
        target = _Target(pod.meta.uid, ip, probes, refusal)
        self._targets[key] = target
        if refusal is not None:
            log.warning("pod %s/%s cannot be probed: %s", key[0], key[1], refusal)
        assert self._loop is not None
        for probe in probes:
            target.results[probe.container] = _Result(pod.ready, probe.success_threshold, probe.failure_threshold)
            target.tasks.append(self._loop.create_task(self._work(key, target, probe), name=f"probe {key[0]}/{key[1]}"))
        self._check(key, target, pod)

    def _forget(self, namespace: str, name: str) -> None:
        target = self._targets.pop((namespace, name), None)
        if target is not None:
            for task in target.tasks:
                task.cancel()

    # --- probing ----------------------------------------------------------------------------

    async def _work(self, key: tuple[str, str], target: _Target, probe: Probe) -> None:
        """One container's worker: probe on the period, count results, report changes."""
        host = probe.host or target.ip
        result = target.results[probe.container]
        period = probe.period
        due = self._clock() + probe.initial_delay
        while True:
            await self._sleep(max(0.0, due - self._clock()))
            assert self._slots is not None
            async with self._slots:
                failure = await run_probe(probe, host, self._ssl_context)
            self.stats.probes += 1
            if failure is not None:
                self.stats.failures += 1
                log.debug("pod %s/%s container %s: probe failed: %s", key[0], key[1], probe.container, failure)
                self._record_failure(key, probe, failure)
            if result.record(failure is None):
                log.info(
                    "pod %s/%s container %s is %s", key[0], key[1], probe.container,
                    "ready" if result.ready else f"not ready: {failure}",
                )
            self._check(key, target)
            # The next tick; ticks that passed while probing collapse into one, run now.
            due += period
            now = self._clock()
            if due < now:
                due += math.floor((now - due) / period) * period

    def _record_failure(self, key: tuple[str, str], probe: Probe, failure: str) -> None:
        pod = self._store.get(POD, *key) if self._events is not None else None
        if self._events is not None and isinstance(pod, Pod):
            self._events.record(
                pod, "Warning", "Unhealthy", f"Readiness probe failed: {failure}",
                component="kubelet", host=pod.node_name, field_path=f"spec.containers{{{probe.container}}}",
            )

    def _ssl_context(self) -> ssl.SSLContext:
        # httpGet with scheme HTTPS does not verify the certificate, as the kubelet's does not.
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        return self._ssl

    # --- writing the condition ----------------------------------------------------------------

    def _check(self, key: tuple[str, str], target: _Target, pod: Pod | None = None) -> None:
        """Queue a write if the stored condition differs from what the probes say."""
        if pod is None:
            stored = self._store.get(POD, *key)
            pod = stored if isinstance(stored, Pod) else None
        if pod is None or pod.meta.uid != target.uid:
            return
        if _stored_condition(pod) != target.condition():
            self._dirty[key] = None
            if self._flush_handle is None:
                assert self._loop is not None
                # Results that come in the same turn of the loop share one transaction.
                self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, {}
        assert self._loop is not None
        write = self._loop.create_task(self._commit(dirty, self._wall_clock()))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _commit(self, dirty: Mapping[tuple[str, str], None], now: float) -> None:
        try:
            written = await self._backend.write(lambda txn: self._write(txn, dirty, now), fenced=True)
        except NotLeader as exc:  # another replica probes now; this one stops soon
            log.info("not writing the Ready condition of %d pods: %s", len(dirty), exc)
            return
        except Unavailable as exc:  # etcd is away; the next probe of each pod queues it again
            log.warning("cannot write the Ready condition of %d pods: %s", len(dirty), exc)
            return
        except Exception:  # the next probe of each pod queues its write again
            log.exception("cannot write the Ready condition of %d pods", len(dirty))
            return
        self.stats.writes += written
        self.stats.commits += 1

    def _write(self, txn: Any, dirty: Mapping[tuple[str, str], None], now: float) -> int:
        """Write each pod's condition in `txn`; how many were written."""
        written = 0
        for key in dirty:
            target = self._targets.get(key)
            pod = txn.get(POD, *key)
            if target is None or pod is None or pod.meta.uid != target.uid:
                continue
            doc = _with_condition(to_manifest(pod), target.condition(), now)
            if doc is None:
                continue
            try:
                txn.update(doc)  # atomic: a refused write leaves the rest of the batch
            except RegistryError as exc:
                log.error("pod %s/%s: cannot write its Ready condition: %s", key[0], key[1], exc)
                continue
            written += 1
        return written


def _stored_condition(pod: Pod) -> tuple[bool, str, str]:
    for condition in _conditions(pod.manifest):
        if condition.get("type") == READY:
            ready = condition.get("status") == "True"
            return ready, "" if ready else str(condition.get("reason") or ""), "" if ready else str(
                condition.get("message") or ""
            )
    return False, "", ""


def _conditions(doc: Mapping[str, Any]) -> list[Any]:
    status = doc.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return conditions if isinstance(conditions, list) else []


def _with_condition(doc: dict[str, Any], condition: tuple[bool, str, str], now: float) -> dict[str, Any] | None:
    """`doc` with Ready and ContainersReady set to `condition`; None when they already are."""
    ready, reason, message = condition
    status = doc.setdefault("status", {})
    old = {c.get("type"): c for c in _conditions(doc) if isinstance(c, Mapping)}
    wanted = {}
    for kind in (CONTAINERS_READY, READY):
        entry: dict[str, Any] = {"type": kind, "status": "True" if ready else "False"}
        before = old.get(kind)
        kept = before.get("lastTransitionTime") if before is not None and before.get("status") == entry["status"] else None
        entry["lastTransitionTime"] = kept or timestamp(now)
        if not ready:
            entry["reason"], entry["message"] = reason, message
        wanted[kind] = entry
    if all(_same(old.get(kind), entry) for kind, entry in wanted.items()):
        return None
    kept = [c for c in _conditions(doc) if not (isinstance(c, Mapping) and c.get("type") in wanted)]
    status["conditions"] = [*kept, *wanted.values()]
    return doc


def _same(before: Any, entry: Mapping[str, Any]) -> bool:
    if not isinstance(before, Mapping):
        return False
    return all(before.get(k) == entry.get(k) for k in ("status", "reason", "message"))


# --- the probes themselves ------------------------------------------------------------------


async def run_probe(probe: Probe, host: str, ssl_context: Callable[[], ssl.SSLContext]) -> str | None:
    """Run one probe against host; None on success, else why it failed (one line)."""
    try:
        async with asyncio.timeout(probe.timeout):
            sock = await _connect(host, probe.port, min(probe.timeout, probe.period / 2))
            if probe.action == "tcpSocket":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                sock.close()
                return None
            if probe.scheme == "HTTPS":
                return await _https_get(probe, host, sock, ssl_context())
            return await _http_get(probe, host, sock)
    except TimeoutError:
        return f"timeout: no answer within {probe.timeout:g}s"
    except OSError as exc:
        return f"{probe.action} {join_host_port(host, probe.port)}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 (whatever stops a probe fails it; the worker goes on)
        return f"{probe.action} {join_host_port(host, probe.port)}: {exc!r}"


async def _connect(host: str, port: int, limit: float) -> socket.socket:
    """A TCP connection to host:port; OSError (not TimeoutError: the probe's own timeout has not
    passed) when the kernel has not made it within `limit` s."""
    loop = asyncio.get_running_loop()
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: Any = (host, port)
    except ValueError:  # a name in probe.host: resolved like any client would
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(limit):
            await loop.sock_connect(sock, address)
    except TimeoutError:
        # The kernel may have made it while a busy loop had yet to say so: only a handshake
        # that is still unanswered fails here.
        with contextlib.suppress(OSError):
            sock.getpeername()
            return sock
        sock.close()
        raise OSError(f"no connection within {limit:g}s") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _request(probe: Probe, host: str) -> bytes:
    headers = {"Host": join_host_port(host, probe.port), "User-Agent": USER_AGENT, "Accept": "*/*"}
    for name, value in probe.headers:  # the probe's own headers win, Host included
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        headers[name] = value
    lines = [f"GET {probe.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _verdict(head: bytes) -> str | None:
    """The status line of a response -> None (200-399) or why the probe failed."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return f"not an HTTP response: {line[:60]!r}"
    code = int(parts[1])
    return None if 200 <= code < 400 else f"HTTP probe failed with statuscode: {code}"


async def _http_get(probe: Probe, host: str, sock: socket.socket) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, _request(probe, host))
        received = bytearray()
        # Read to the end (the server closes: Connection: close) so that the server, not
        # kdns, holds the TIME_WAIT; a larger answer is cut at the kubelet's limit.
        while len(received) < HTTP_READ_LIMIT:
            chunk = await loop.sock_recv(sock, HTTP_READ_LIMIT)
            if not chunk:
                break
            received += chunk
        return _verdict(bytes(received))
    finally:
        sock.close()


async def _https_get(probe: Probe, host: str, sock: socket.socket, context: ssl.SSLContext) -> str | None:
    try:
        reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=probe.host or host)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(_request(probe, host))
        await writer.drain()
        return _verdict(await reader.read(HTTP_READ_LIMIT))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
