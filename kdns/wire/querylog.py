"""The query log (`--log-queries`): one line per answer, written off the event loop.

Off by default, and then it costs nothing: the wire servers hold None and take their
usual paths (the UDP server picks its batch loop once, at start). On, the event loop only
hands the request's and the reply's bytes, the client and two clock readings to a queue
(`record`: one append to a deque, no lock and no wake-up); a writer thread, waking 20
times a second, turns them into lines and writes them to the stream in one write, so a
slow terminal or pipe never stalls DNS. If the writer falls more than
MAX_PENDING answers behind, answers are left out of the log and counted (`dropped`).

`sample` logs one answer in round(1 / sample) (a countdown, not a random draw: cheap
and even).

Two formats:

* `coredns`: CoreDNS's log plugin's default (`{common}`), so tools that read CoreDNS logs
  read these: `[INFO] {remote}:{port} - {>id} "{type} {class} {name} {proto} {size}
  {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`, e.g.
  `[INFO] 127.0.0.1:40001 - 4242 "A IN web.default.svc.cluster.local. udp 58 false 1232"
  NOERROR qr,aa,rd 120 0.000081s`. The name is lower case, as CoreDNS prints it.
* `json`: one JSON object per line with the same facts and where the answer came from:
  `{"time", "client", "port", "id", "name", "type", "class", "proto", "size", "do",
  "bufsize", "rcode", "flags", "rsize", "duration", "source"}`.

`source` is `cluster`, `zone`, `cache`, `upstream` or `server` (kdns.message.Source). For
an answer the slow path made it is the answer's own; a ready reply (kdns.wire.fastpath)
was made from one of those earlier and says so by its flags: authoritative is the
cluster's (a name of the served zones) or a static zone's, anything else the cache's.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from kdns import codec
from kdns.config import QUERY_LOG_FORMATS
from kdns.message import REFUSED, Source, class_text, rcode_text, type_text

__all__ = ["MAX_PENDING", "QueryLog"]

log = logging.getLogger(__name__)

# Answers waiting for the writer at most: beyond, the log leaves answers out.
MAX_PENDING = 65536
# How often the writer wakes to write what has been queued: the event loop never wakes
# it (no syscall, no lock per answer), so a line may appear this late.
WRITE_EVERY = 0.05
# Lines formatted between two offers of the GIL to the event loop (about 0.1 ms of work).
YIELD_EVERY = 32
# Formatted question-and-reply parts kept for reuse: most answers repeat a few questions.
MAX_FORMATS = 8192
_FLAGS = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"), (0x0020, "ad"), (0x0010, "cd"))

# What the event loop hands over: request, reply, client address, client port,
# transport, seconds taken, the answer's source (None: a ready reply, inferred), when.
_Record = tuple[bytes, bytes, str, int, str, float, "Source | None", float]


class QueryLog:
    """A query log writing to `stream` in `fmt`, one answer in round(1 / sample).

    `zones` are the served zones (lower case, absolute): a ready authoritative reply for
    a name in them came from the cluster, any other from a static zone. Call `close()`
    to write what is pending and stop the writer.

    The event loop appends to a deque (atomic, no lock taken, no thread woken); the writer
    thread wakes every WRITE_EVERY seconds and writes everything queued in one write().
    Each line is the answer's fixed part (question, sizes, rcode, flags, source),
    formatted once per distinct request and reply and kept, plus the client, ID, time
    and duration.
    """

    def __init__(self, stream: TextIO, fmt: str, sample: float, zones: Iterable[str]) -> None:
        if fmt not in QUERY_LOG_FORMATS:
            raise ValueError(f"query log format {fmt!r}: must be one of {', '.join(QUERY_LOG_FORMATS)}")
        if not 0 < sample <= 1:
            raise ValueError(f"query log sample {sample}: must be above 0 and at most 1")
        self.stream = stream
        self.format = fmt
        self.every = max(1, round(1 / sample))
        self._countdown = 1
        self.zones = tuple(zones)
        self.dropped = 0
        self.written = 0
        self._pending: collections.deque[_Record] = collections.deque()
        self._formats: dict[tuple[bytes, bytes, str, Source | None], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="kdns query log", daemon=True)
        self._thread.start()

    def record(
        self,
        request: bytes,
        reply: bytes,
        client: str,
        port: int,
        transport: str,
        seconds: float,
        source: Source | None = None,
    ) -> None:
        """One answer (called on the event loop: cheap, never blocks)."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.every
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            self.dropped += 1
            return
        pending.append((request, reply, client, port, transport, seconds, source, time.time()))

    def close(self) -> None:
        """Write what is pending, stop the writer thread (at most a few seconds)."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(5.0)

    # --- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            stopping = self._stop.wait(WRITE_EVERY)
            if not self._write_pending():
                return

    def _write_pending(self) -> bool:
        """Write every answer queued now; False if the stream is gone (logging stops)."""
        pending, line = self._pending, self._line
        lines: list[str] = []
        while pending:
            text = line(pending.popleft())  # popleft: atomic against the loop's append
            if text is not None:
                lines.append(text)
                if not len(lines) % YIELD_EVERY:
                    # Let the event loop have the GIL now rather than after the
                    # interpreter's 5 ms switch interval: its answers must not wait.
                    time.sleep(0)
        if not lines:
            return True
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe: stop logging, not DNS
            log.error("query log: cannot write: %s; query logging stops", exc)
            return False
        self.written += len(lines)
        return True

    def _line(self, item: _Record) -> str | None:
        """One log line (with its newline), or None for bytes that are no DNS message."""
        request, reply, client, port, transport, seconds, source, when = item
        key = (request[2:], reply[2:], transport, source)
        fixed = self._formats.get(key)
        if fixed is None:
            fixed = self._fixed(request, reply, transport, source)
            if fixed is None:
                return None
            if len(self._formats) >= MAX_FORMATS:
                self._formats.clear()
            self._formats[key] = fixed
        ident = int.from_bytes(request[0:2], "big")
        if self.format == "json":
            return (
                f'{{"time": {when:.6f}, "client": {json.dumps(client)}, "port": {port}, "id": {ident}, '
                f'{fixed}, "duration": {seconds:.9f}}}\n'
            )
        remote = f"[{client}]" if ":" in client else client
        return f"[INFO] {remote}:{port} - {ident} {fixed} {_duration(seconds)}\n"

    def _fixed(self, request: bytes, reply: bytes, transport: str, source: Source | None) -> str | None:
        """The part of a line that depends only on the request and reply bytes after the ID."""
        question = codec.question_text(reply) or codec.question_text(request)
        if question is None or len(reply) < 12:
            return None
        name, qtype, qclass = question
        flags = int.from_bytes(reply[2:4], "big")
        rcode = flags & 0x0F
        do, bufsize = codec.request_edns(request)
        if source is None:
            source = self._inferred(flags, rcode, name)
        flag_text = ",".join(text for bit, text in _FLAGS if flags & bit)
        qtype_text, qclass_text, status = type_text(qtype), class_text(qclass), rcode_text(rcode)
        if self.format == "json":
            fields = {
                "name": name,
                "type": qtype_text,
                "class": qclass_text,
                "proto": transport,
                "size": len(request),
                "do": do,
                "bufsize": bufsize,
                "rcode": status,
                "flags": flag_text,
                "rsize": len(reply),
                "source": source,
            }
            return json.dumps(fields)[1:-1]
        return (
            f'"{qtype_text} {qclass_text} {name} {transport} {len(request)} {"true" if do else "false"} {bufsize}" '
            f"{status} {flag_text} {len(reply)}"
        )

    def _inferred(self, flags: int, rcode: int, name: str) -> Source:
        """Where a ready reply came from, by its flags (module docstring)."""
        if flags & 0x0400:
            if any(name == zone or name.endswith("." + zone) for zone in self.zones):
                return "cluster"
            return "zone"
        if rcode == REFUSED:  # kdns's own
            return "server"
        return "cache"


def _duration(seconds: float) -> str:
    """Seconds as CoreDNS prints them (Go's FormatFloat 'f', -1): no exponent, no trailing 0s."""
    text = f"{seconds:.9f}".rstrip("0")
    return (text + "0" if text.endswith(".") else text) + "s"
