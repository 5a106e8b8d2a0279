"""Issue 10 item 8: no timeout setting switches the per-attempt deadline off by accident.

An explicit ``deadline=`` wins; a number is the deadline; an ``httpx2.Timeout`` gives the sum of
its finite connect, write and read timeouts (pool excluded); there is no deadline only with
``deadline=None`` and ``timeout=None`` together.
"""

from __future__ import annotations

import math
import time

import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native.client import DEFAULT_TIMEOUT

from .loopback import TRICKLE

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

MESSAGES = [{"role": "user", "content": "deadline probe"}]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"timeout": 7.5}, 7.5),
        ({"timeout": 7.5, "deadline": 2.0}, 2.0),
        ({"timeout": httpx2.Timeout(5.0)}, 15.0),
        ({"timeout": httpx2.Timeout(5.0, pool=1000.0)}, 15.0),
        ({"timeout": httpx2.Timeout(None, connect=2.0, read=3.0)}, 5.0),
        ({"timeout": httpx2.Timeout(1.0, connect=2.0, write=3.0, read=4.0)}, 9.0),
        ({"timeout": httpx2.Timeout(None, read=math.inf, connect=2.0)}, 2.0),
        ({"timeout": httpx2.Timeout(2.0), "deadline": 60.0}, 60.0),
        ({"timeout": httpx2.Timeout(None)}, DEFAULT_TIMEOUT),
        ({"timeout": None}, DEFAULT_TIMEOUT),
        ({"timeout": httpx2.Timeout(3.0), "deadline": None}, 9.0),
        ({"timeout": 4.0, "deadline": None}, 4.0),
        ({"timeout": None, "deadline": None}, None),
        ({}, DEFAULT_TIMEOUT),
    ],
)
def test_timeout_object_does_not_switch_off_the_deadline(options, expected):
    client = nomyo.SecureCompletionClient("https://peer.test", **options)
    assert client._deadline == expected


@pytest.mark.parametrize("deadline", [math.inf, math.nan, -math.inf])
def test_deadline_must_be_finite(deadline):
    with pytest.raises(ValueError, match="deadline"):
        nomyo.SecureCompletionClient("https://peer.test", deadline=deadline)


async def test_trickling_answer_is_cut_with_an_httpx_timeout_object(loopback, chat_to):
    # Each byte arrives well within the 0.5 s read timeout, so only the attempt deadline
    # (0.5 + 0.5 + 0.5 s here) can end it; before, a Timeout object meant no deadline at all.
    loopback.then(TRICKLE)
    started = time.monotonic()
    async with chat_to(max_retries=0, timeout=httpx2.Timeout(0.5)) as chat:
        with pytest.raises(nomyo.APIConnectionError, match="deadline"):
            await chat.create(model="loopback-model", messages=MESSAGES)
    # A generous bound: the full trickle takes minutes.
    assert time.monotonic() - started < 60
    assert len(loopback.posts) == 1
