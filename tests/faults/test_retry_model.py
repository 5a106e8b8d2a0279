"""Model-based check of the retry rules: random fault sequences against a model of PROTOCOL.md s.4.

Hypothesis draws a script of server behaviours and ``max_retries``; the model predicts the
outcome (success, or which exception), how many POSTs the peer sees and how many waits the
client takes; the real client over a real socket must agree on all three. Retried: 429, 500,
502, 503, 504 and network failures; not retried: 400, 401, 403, 404 and security failures.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nomyo_native as nomyo

from .conftest import Sleeps
from .loopback import CLOSE, DROP_MID_BODY, OK, TAMPER, Action, LoopbackPeer, json_status, raw_body

STATUS_ERRORS: dict[int, type[Exception]] = {
    400: nomyo.InvalidRequestError,
    401: nomyo.AuthenticationError,
    403: nomyo.ForbiddenError,
    404: nomyo.APIError,
    429: nomyo.RateLimitError,
    500: nomyo.ServerError,
    502: nomyo.APIError,
    503: nomyo.ServiceUnavailableError,
    504: nomyo.APIError,
}
RETRIED_STATUSES = {429, 500, 502, 503, 504}

ACTIONS = st.one_of(
    st.just(OK),
    st.just(DROP_MID_BODY),
    st.just(CLOSE),
    st.just(TAMPER),
    st.just(raw_body(b"<html>not an envelope</html>")),
    st.sampled_from(sorted(STATUS_ERRORS)).map(lambda code: json_status(code, f"status {code}")),
)


def predict(script: list[Action], max_retries: int) -> tuple[type[Exception] | None, int]:
    """(exception or None for success, number of POSTs) that PROTOCOL.md s.4 prescribes."""
    for attempt in range(max_retries + 1):
        action = script[attempt] if attempt < len(script) else OK
        last = attempt == max_retries
        if action.kind == "ok":
            return None, attempt + 1
        if action.kind in ("drop_mid_body", "close"):
            if last:
                return nomyo.APIConnectionError, attempt + 1
            continue
        if action.kind == "tamper":
            return nomyo.SecurityError, attempt + 1  # the opaque crypto failure
        if action.kind == "body":
            return nomyo.ResponseFormatError, attempt + 1  # a SecurityError that names the defect
        if action.status in RETRIED_STATUSES and not last:
            continue
        return STATUS_ERRORS[action.status], attempt + 1
    raise AssertionError("unreachable")


@pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(ACTIONS, max_size=5), max_retries=st.integers(0, 3))
def test_outcome_posts_and_waits_follow_the_model(loopback_key, script, max_retries) -> None:
    expected_error, expected_posts = predict(script, max_retries)
    sleeps = Sleeps()

    async def run() -> tuple[BaseException | None, int]:
        with LoopbackPeer(loopback_key) as peer:
            peer.then(*script)
            async with nomyo.SecureChatCompletion(
                base_url=peer.url,
                allow_http=True,
                key_size=2048,
                max_retries=max_retries,
                sleep=sleeps,
            ) as chat:
                try:
                    await chat.create(model="m", messages=[{"role": "user", "content": "model"}])
                except Exception as exc:
                    return exc, len(peer.posts)
            return None, len(peer.posts)

    error, posts = asyncio.run(run())
    if expected_error is None:
        assert error is None, repr(error)
    else:
        assert type(error) is expected_error, (repr(error), [a.kind for a in script])
    assert posts == expected_posts
    assert len(sleeps.waits) == expected_posts - 1
