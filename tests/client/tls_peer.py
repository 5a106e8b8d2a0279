"""A TLS server on loopback whose records are made by hand (the interpreter's ``ssl`` over memory
BIOs, on a plain asyncio TCP stream), so that a test sends exactly the bytes it means: half a
record, a tampered record, garbage, a bare FIN, a reset, or nothing at all; and sees whether the
client's close came with close_notify."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

_READ = 65536


class TlsPeer:
    """The server end of one connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._plain = bytearray()

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_pending()
                await self._receive_more()
        await self._send_pending()  # the Finished, and TLS 1.3's session tickets

    def records(self, plaintext: bytes) -> bytes:
        """``plaintext`` as TLS records, not sent."""
        self.tls.write(plaintext)
        return self._outgoing.read()

    async def stall(self) -> None:
        """Sends nothing more, reads nothing more, until the server stops."""
        await asyncio.Event().wait()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, plaintext: bytes) -> None:
        await self.send_raw(self.records(plaintext))

    async def close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        await self._send_pending()

    def fin(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def read_request(self) -> bytes:
        """One HTTP/1.1 request (head and Content-Length body), decrypted."""
        while b"\r\n\r\n" not in self._plain:
            await self._decrypt_more()
        end = self._plain.index(b"\r\n\r\n") + 4
        length = 0
        for line in bytes(self._plain[:end]).split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(self._plain) < end + length:
            await self._decrypt_more()
        request = bytes(self._plain[: end + length])
        del self._plain[: end + length]
        return request

    async def how_closed(self) -> str:
        """Reads until the client's end: "close_notify", "EOF" (a FIN without it) or "reset"."""
        try:
            while True:
                await self._decrypt_more()
        except ssl.SSLZeroReturnError:
            return "close_notify"
        except ssl.SSLEOFError:
            return "EOF"
        except ConnectionResetError:
            return "reset"

    async def _decrypt_more(self) -> None:
        while True:
            try:
                chunk = self.tls.read(_READ)
            except ssl.SSLWantReadError:
                await self._receive_more()
                continue
            if not chunk:  # what ssl's read returns for close_notify
                raise ssl.SSLZeroReturnError("close_notify received")
            self._plain += chunk
            return

    async def _receive_more(self) -> None:
        data = await self.reader.read(_READ)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _send_pending(self) -> None:
        data = self._outgoing.read()
        if data:
            await self.send_raw(data)


@dataclass
class PeerServer:
    url: str
    port: int
    accepted: int = 0
    outcomes: list[str] = field(default_factory=list)


@asynccontextmanager
async def tls_peer(
    context: ssl.SSLContext, script: Callable[[TlsPeer], Awaitable[None]], handshake: bool = True
) -> AsyncIterator[PeerServer]:
    """Serves each connection with ``script`` (after the handshake, unless ``handshake`` is
    False); a script's exception is recorded in ``outcomes`` by type name, "done" otherwise."""

    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.accepted += 1
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        peer = TlsPeer(reader, writer, context)
        try:
            if handshake:
                await peer.handshake()
            await script(peer)
            server.outcomes.append("done")
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            server.outcomes.append(type(exc).__name__)
        except asyncio.CancelledError:  # at the server's end: not an error of the callback's
            server.outcomes.append("cancelled")
        finally:
            writer.transport.abort()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server = PeerServer(f"https://127.0.0.1:{port}", port)
    try:
        yield server
    finally:
        for handler in handlers:
            handler.cancel()
        listener.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), 2)
