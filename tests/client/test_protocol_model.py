"""The retry model of ``tests/faults/test_retry_model.py``, checked on the protocol layer alone.

The same scripts of server behaviour and the same model of PROTOCOL.md section 4, but with no
socket and no driver: each scripted answer goes straight to the functions the drivers call
(``status_error`` and ``RetryPolicy`` for non-200 answers and network failures,
``open_response`` for a 200 body), so the decisions themselves are what must agree with the
model.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.faults.loopback import OK, Action
from tests.faults.test_retry_model import ACTIONS, predict

import nomyo_native as nomyo
from nomyo_native import _core, _protocol
from nomyo_native._retry import RetryPolicy

from .peer import seal_to

PAYLOAD_ID = "model-payload-id"
KEYPAIR = _core.ClientKeyPair.generate(2048)
CLIENT_PUBLIC = serialization.load_pem_public_key(KEYPAIR.public_key_pem.encode())


def _body_of(action: Action) -> bytes:
    """The 200 body an ``ok``, ``tamper`` or ``body`` action sends."""
    if action.kind == "body":
        return action.body
    reply = {"choices": [], "_metadata": {"payload_id": PAYLOAD_ID}}
    sealed = seal_to(CLIENT_PUBLIC, reply)
    if action.kind == "ok":
        return sealed
    envelope = json.loads(sealed)
    ciphertext = envelope["encrypted_payload"]["ciphertext"]
    flipped = "B" if ciphertext[4] == "A" else "A"
    envelope["encrypted_payload"]["ciphertext"] = ciphertext[:4] + flipped + ciphertext[5:]
    return json.dumps(envelope).encode()


def run(script: list[Action], max_retries: int) -> tuple[type[Exception] | None, int, int]:
    """(exception type or None, attempts made, waits taken), deciding as the drivers do."""
    policy = RetryPolicy(max_retries=max_retries)
    waits = 0
    for attempt in range(policy.attempts):
        action = script[attempt] if attempt < len(script) else OK
        if action.kind in ("drop_mid_body", "close"):
            delay = policy.after_failure(attempt, permanent=False)
            if delay is None:
                return nomyo.APIConnectionError, attempt + 1, waits
        elif action.kind == "status":
            error = _protocol.status_error(
                action.status, action.body, None, secrets=(), shown_url="http://peer"
            )
            delay = policy.after_status(attempt, error, None)
            if delay is None:
                return type(error), attempt + 1, waits
        else:
            try:
                _protocol.open_response(_body_of(action), PAYLOAD_ID, KEYPAIR)
            except Exception as exc:
                return type(exc), attempt + 1, waits
            return None, attempt + 1, waits
        waits += 1
    raise AssertionError("the policy never stopped")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(script=st.lists(ACTIONS, max_size=5), max_retries=st.integers(0, 3))
def test_protocol_decisions_follow_the_model(script, max_retries) -> None:
    expected_error, expected_attempts = predict(script, max_retries)
    error, attempts, waits = run(script, max_retries)
    assert error is expected_error, [a.kind for a in script]
    assert attempts == expected_attempts
    assert waits == expected_attempts - 1
