"""A loopback HTTP/1.1 server that answers every request by a script of its own: raw bytes on
the socket, paced as the test wants (interim responses without end, a head trickling in a byte
at a time). Unlike ``loopback.LoopbackPeer`` it speaks no protocol beyond reading a request."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# What the server does with one request on ``sock`` (the request's head and body already read):
# write what it likes, for as long as it likes (until ``stopping`` is set at the end of the
# test); returning False closes the connection.
Answer = Callable[[socket.socket, bytes, threading.Event], bool]


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: HostileServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        received = b""
        try:
            while not server.stopping.is_set():
                while b"\r\n\r\n" not in received:
                    data = sock.recv(65536)
                    if not data:
                        return
                    received += data
                head, received = received.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(received) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    received += data
                server.requests.append(head)
                received = received[length:]
                if not server.answer(sock, head, server.stopping):
                    return
        except OSError:
            return  # the client hung up on an answer it refused


@contextmanager
def hostile(answer: Answer) -> Iterator[HostileServer]:
    server = HostileServer(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
