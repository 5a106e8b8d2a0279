"""Review 10: a payload dict that changes while the core writes it. Writing a member can run
Python code: allocating an object (a big int's digits) lets the cyclic collector run, and a
finalizer it calls can touch the payload (or let another thread run that does). PyO3's dict
iterator panics at its next step when the size changed; the panic was caught, but the seal then
failed as an opaque *decryption* failure (CryptoError) and the panic's message and backtrace went
to stderr. A change must be refused as a typed error naming the rule, with nothing on stderr."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from nomyo_native import _core

BIG = 2**100  # written through int.__repr__: an allocation, so a chance for the collector


@pytest.fixture(scope="module")
def server_key() -> _core.ServerPublicKey:
    return _core.ServerPublicKey.from_pem(_core.ClientKeyPair.generate(2048).public_key_pem)


class _Finalized:
    """A cycle whose finalizer runs ``then`` once, when the collector frees it."""

    def __init__(self, then: Callable[[], None]) -> None:
        self.then = then
        self.cycle = self

    def __del__(self) -> None:
        then, self.then = self.then, lambda: None
        then()


def _grow(payload: dict[str, object]) -> None:
    for n in range(100):
        payload[f"added{n}"] = n


def _shrink(payload: dict[str, object]) -> None:
    for key in [k for k in payload if k.startswith("k")][:20]:
        del payload[key]


def _swap(payload: dict[str, object]) -> None:
    for key in [k for k in payload if k.startswith("k")][:20]:
        del payload[key]
        payload[key + "-swapped"] = 0


def _seal_while_collecting(
    payload: dict[str, object], server_key: _core.ServerPublicKey
) -> bytes | Exception:
    """Seal with the collector run at every allocation (the finalizer armed runs at the
    first one inside the seal): the envelope, or the exception."""
    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        return _core.seal(payload, server_key)
    except Exception as exc:
        return exc
    finally:
        gc.set_threshold(*thresholds)


@pytest.mark.parametrize("change", [_grow, _shrink, _swap], ids=["grow", "shrink", "swap"])
@pytest.mark.parametrize("nested", [False, True])
def test_a_payload_changed_while_it_is_written_is_refused_typed_and_quietly(
    server_key, capfd, change, nested
):
    members: dict[str, object] = {f"k{n}": BIG + n for n in range(60)}
    payload: dict[str, object] = {"model": "m", "metadata": members} if nested else members
    ran: list[bool] = []

    def then() -> None:
        ran.append(True)
        change(members)

    gc.collect()
    _Finalized(then)  # garbage at once: freed by the first collection
    outcome = _seal_while_collecting(payload, server_key)
    assert ran, "the finalizer never ran: nothing was tested"
    said = capfd.readouterr()
    assert "panicked" not in said.err and "changed size" not in said.err, said.err
    assert not isinstance(outcome, _core.CryptoError), repr(outcome)
    if change is _swap and isinstance(outcome, bytes):
        return  # same size, keys replaced: written as it was met, as json.dumps may
    assert isinstance(outcome, ValueError), repr(outcome)
    assert "changed size while it was being serialized" in str(outcome)
    assert str(outcome).startswith("$.metadata:" if nested else "$:"), str(outcome)


def test_a_payload_that_does_not_change_is_sealed_under_the_same_collector(server_key):
    members: dict[str, object] = {f"k{n}": BIG + n for n in range(60)}
    ran: list[bool] = []
    gc.collect()
    _Finalized(lambda: ran.append(True))
    outcome = _seal_while_collecting({"model": "m", "metadata": members}, server_key)
    assert ran
    assert isinstance(outcome, bytes), repr(outcome)
