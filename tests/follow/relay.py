"""A TCP relay between a follower and its primary's API that a test can cut and mend.

Real sockets on loopback, run on an event loop in a background thread: `cut()` closes
every relayed connection and closes new ones at once (the follower sees its watches
break and cannot reconnect), `mend()` lets connections through again. It is how a test
keeps a follower away from a primary that goes on committing, without stopping either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading

TIMEOUT = 10.0


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._thread.start()
        self._server: asyncio.Server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(TIMEOUT)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Known from the moment it is accepted, so that a cut while the upstream
        # connection is still being made closes it too.
        self._writers.add(writer)
        try:
            if not self._open:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                return
            self._writers.add(up_writer)
            try:
                if self._open and not writer.is_closing():
                    await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                                         return_exceptions=True)
            finally:
                up_writer.close()
                self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        async def cut() -> None:
            self._open = False
            for writer in list(self._writers):
                writer.close()

        self._call(cut())

    def mend(self) -> None:
        async def mend() -> None:
            self._open = True

        self._call(mend())

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            # With every connection closed the relaying tasks end on their own.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=TIMEOUT / 2)
            # A connection accepted while closing (a follower reconnecting) may still be
            # open: abort it, so that no socket outlives the loop (its ResourceWarning
            # would fail whichever test runs when it is collected).
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.sleep(0)

        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._loop.close()
