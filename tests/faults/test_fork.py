"""A client used before ``fork()`` and again in the child: the child must not talk over the
parent's pooled connections. Two processes writing to one socket interleave their requests, and
one may read the other's answer (under TLS both also advance one session's record counters, so
the next record of either is refused)."""

from __future__ import annotations

import asyncio
import os

import pytest

import nomyo_native as nomyo

from .loopback import LoopbackPeer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

USER = [{"role": "user", "content": "before and after fork"}]


class CountingPeer(LoopbackPeer):
    """The loopback peer, counting the connections it accepted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.connections = 0

    async def _serve(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        self.connections += 1
        await super()._serve(reader, writer)


def _in_child(run) -> int:  # type: ignore[no-untyped-def]
    """Exit status of ``run()`` in a forked child (0: it returned, 1: it raised)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            run()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _client(driver: str, url: str):  # type: ignore[no-untyped-def]
    """(chat, create): a chat client of either driver and a blocking call of ``create``."""
    options = {"base_url": url, "allow_http": True, "key_size": 2048, "max_retries": 0}
    if driver == "sync":
        sync_chat = nomyo.SyncSecureChatCompletion(timeout=10.0, **options)
        return sync_chat, lambda: sync_chat.create(model="m", messages=USER)
    async_chat = nomyo.SecureChatCompletion(timeout=10.0, **options)
    return async_chat, lambda: asyncio.run(async_chat.create(model="m", messages=USER))


@pytest.mark.parametrize("driver", ["async", "sync"])
def test_a_client_forked_after_use_opens_its_own_connection(loopback_key, driver):
    with CountingPeer(loopback_key) as peer:
        chat, create = _client(driver, peer.url)
        try:
            create()
            connections = peer.connections  # key fetch and completion, kept alive

            assert _in_child(create) == 0
            assert peer.connections == connections + 1, "the child used the parent's connection"
            assert len(peer.posts) == 2
        finally:
            chat.close()


def test_the_parent_keeps_its_pooled_connection_after_a_child_used_the_client(loopback_key):
    with CountingPeer(loopback_key) as peer:
        chat, create = _client("sync", peer.url)
        try:
            create()
            assert _in_child(create) == 0
            create()
            assert peer.connections == 2  # the parent's one, kept alive, and the child's
            assert len(peer.posts) == 3
        finally:
            chat.close()


def test_a_child_closing_the_client_leaves_the_parents_connections_alone(loopback_key):
    with CountingPeer(loopback_key) as peer:
        chat, create = _client("sync", peer.url)
        try:
            create()
            assert _in_child(chat.close) == 0
            create()
            assert peer.connections == 1, "the child's close() ended the parent's connection"
        finally:
            chat.close()
