"""A small TCP proxy on loopback: added latency and partitions between a worker and Redis.

``coditect-tasks chaos`` puts one before a probe worker; the chaos tests use it the same way.

Runs its own asyncio loop in a thread. A partition holds every byte in flight
(as a dropped link does, until TCP retransmits get through after it heals);
latency delays each chunk from client to server by a fixed time without
reordering, so the round trip grows by exactly that much.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from ..redis_server import free_port


class ChaosProxy:
    """A proxy on a loopback port of its own towards ``target_host``:``target_port``."""

    def __init__(self, target_port: int, latency: float = 0.0, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()
        self.latency = latency
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)

    def start(self) -> ChaosProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        return self

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    @classmethod
    def towards(cls, redis_url: str) -> ChaosProxy:
        """A proxy towards the host and port of ``redis_url``."""
        parts = urlsplit(redis_url)
        return cls(parts.port or 6379, target_host=parts.hostname or "127.0.0.1")

    def url(self, redis_url: str) -> str:
        """``redis_url`` through the proxy: its host and port replaced by the proxy's."""
        parts = urlsplit(redis_url)
        auth, _, _ = parts.netloc.rpartition("@")
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def partition(self, seconds: float) -> None:
        """Hold all traffic for ``seconds`` (returns at once; heals by itself)."""
        self._loop.call_soon_threadsafe(self._open.clear)
        self._loop.call_soon_threadsafe(self._loop.call_later, seconds, self._open.set)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, self.latency),
            self._pipe(up_reader, writer, 0.0),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                queue.put_nowait((time.monotonic() + delay, data))
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await sender
            writer.close()

    def stop(self) -> None:
        """Close the server and every connection, then the loop: nothing is left for the garbage
        collector to finalize (and warn about) in a later test."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
