"""The async transport in a process holding more descriptors than ``select()`` can watch
(FD_SETSIZE, 1024): a server's process, say. Its sockets then have numbers above 1024, and
the kept-alive connection's check for whether the server closed it must still work."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import httpx2
import pytest

from .test_http11_exchange import get_body, make_transport, ok, serving

# POSIX only: Windows has no descriptor limit to raise (nor poll(): select() is used there).
resource = pytest.importorskip("resource")

ABOVE_SELECT = 1100


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ABOVE_SELECT + 200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the descriptor limit ({hard}) is below {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(ABOVE_SELECT)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("many_descriptors")
async def test_a_kept_alive_connection_on_a_high_descriptor_is_reused() -> None:
    async with serving(lambda n: ok(b"answer %d" % n)) as server:
        async with httpx2.AsyncClient(transport=make_transport("direct")) as http:
            for n in range(3):
                chunks, status = await get_body(http, server.url)
                assert status == 200 and b"".join(chunks) == b"answer %d" % n
            (connection,) = http._transport._pool.connections  # type: ignore[attr-defined]
            socket = connection._stream.get_extra_info("socket")
            assert socket.fileno() > getattr(select, "FD_SETSIZE", 1024)
    assert server.accepted == 1
