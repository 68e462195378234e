"""A small round-robin TCP proxy (a stand-in for any L4 load balancer) for tests.

Each accepted connection goes to the next backend in turn; bytes are piped both ways
untouched, so TLS ends at the gateway instances.  Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections import Counter


class RoundRobinProxy:
    def __init__(self, backends: list[tuple[str, int]], *, idle_close: float | None = None
                 ) -> None:
        """``idle_close``: close a connection idle this many seconds, so a keep-alive
        client opens a new one (to the next backend) for its next request."""
        self.backends = backends
        self.idle_close = idle_close
        self._next = itertools.cycle(range(len(backends)))
        self.connections: Counter[int] = Counter()  # per backend index
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        sock.close()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tcp-proxy")
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=512))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = next(self._next)
        self.connections[index] += 1
        host, port = self.backends[index]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        state = _Activity()
        pipes = [asyncio.ensure_future(_pipe(reader, up_writer, state, upstream=True)),
                 asyncio.ensure_future(_pipe(up_reader, writer, state, upstream=False))]
        if self.idle_close is not None:
            watchdog = asyncio.ensure_future(_close_when_idle(state, self.idle_close,
                                                              (writer, up_writer)))
            await asyncio.gather(*pipes)
            watchdog.cancel()
        else:
            await asyncio.gather(*pipes)


class _Activity:
    def __init__(self) -> None:
        self.last = time.monotonic()
        self.answered = False  # the last bytes went to the client: nothing is in flight


async def _close_when_idle(state: _Activity, idle: float,
                           writers: tuple[asyncio.StreamWriter, ...]) -> None:
    """Close after ``idle`` seconds of silence that follow an answer (never mid-request)."""
    while True:
        await asyncio.sleep(idle / 4)
        if state.answered and time.monotonic() - state.last > idle:
            for writer in writers:
                with contextlib.suppress(ConnectionError, OSError):
                    writer.close()
            return


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Activity,
                *, upstream: bool) -> None:
    try:
        while data := await reader.read(65536):
            state.last = time.monotonic()
            state.answered = not upstream
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()
