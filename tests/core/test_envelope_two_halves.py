"""``open_envelope`` in two halves: ``decrypt_envelope`` (check, unwrap, decrypt, count the
build's cost) and ``OpenedEnvelope.build`` (the payload's objects), for the async client, which
picks the build's thread by its cost (``_loop_calls``)."""

from __future__ import annotations

import copy
import gc
import json
import pickle
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import seal_json

from nomyo_native import _core


def sealed(public: rsa.RSAPublicKey, plaintext: bytes, **extra: Any) -> bytes:
    return seal_json(public, plaintext, **extra)[0]


def cost_of(plaintext: bytes) -> int:
    """``build_cost`` counted the slow way: one per bracket, separator or backslash, eight per
    8-byte word of digits (at offsets that are multiples of 8), plus one."""
    structural = sum(byte in b"[{,:\\" for byte in plaintext)
    words = sum(plaintext[k : k + 8].isdigit() for k in range(0, len(plaintext) - 7, 8))
    return 1 + structural + 8 * words


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.randrange(-(10 ** rng.randrange(1, 60)), 10 ** rng.randrange(1, 60))
    if kind == 1:
        return rng.random() * 10 ** rng.randrange(-5, 5)
    if kind == 2:
        return "".join(rng.choice('ab:,[{9 é漢🔐\n"\\') for _ in range(rng.randrange(30)))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind in (4, 5):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(6))]
    return {f"k{n}:{{": random_json(rng, depth + 1) for n in range(rng.randrange(6))}


def test_the_halves_build_what_open_envelope_builds_and_count_every_costly_byte(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    rng = random.Random(7)
    for _ in range(60):
        value = {"choices": [random_json(rng) for _ in range(rng.randrange(1, 5))]}
        plaintext = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        body = sealed(client_public, plaintext, processed_at=rng.randrange(10**9))
        opened = _core.decrypt_envelope(body, keypair, 10**9)
        assert opened.plaintext_bytes == len(plaintext)
        assert opened.build_cost == cost_of(plaintext)
        assert opened.build() == _core.open_envelope(body, keypair)


def test_the_count_stops_past_its_limit_and_says_more(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    # Big enough for several of the count's blocks (8160 bytes each).
    plaintext = json.dumps({"rows": [[n, n] for n in range(20_000)]}).encode()
    body = sealed(client_public, plaintext)
    whole = cost_of(plaintext)
    for limit in (0, 1, 4096, whole // 2, whole - 1, whole, whole + 1, 10**9):
        cost = _core.decrypt_envelope(body, keypair, limit).build_cost
        assert (cost > limit) == (whole > limit), limit
        assert cost <= whole
        if whole <= limit:
            assert cost == whole
    # A long text without a costly byte costs only its framing ('{', ':' and one).
    text = json.dumps({"a": "x" * 1_000_000}).encode()
    assert _core.decrypt_envelope(sealed(client_public, text), keypair, 100).build_cost == 3


def test_a_payload_is_built_once(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    opened = _core.decrypt_envelope(sealed(client_public, b'{"a": [1, 2]}'), keypair, 100)
    assert "not built" in repr(opened)
    assert opened.build()[0] == {"a": [1, 2]}
    assert "consumed" in repr(opened) and "not built" not in repr(opened)
    with pytest.raises(ValueError, match="already built"):
        opened.build()


def test_an_opened_envelope_shows_and_copies_nothing_of_its_plaintext(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    secret = b'{"content": "the secret answer 4711"}'
    opened = _core.decrypt_envelope(sealed(client_public, secret), keypair, 100)
    assert "secret" not in repr(opened) and "4711" not in repr(opened)
    for duplicate in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            duplicate(opened)
    assert not hasattr(opened, "__dict__")


def test_an_envelope_dropped_unbuilt_gives_its_locked_memory_back(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    body = sealed(client_public, json.dumps({"a": "y" * 3_000_000}).encode())
    gc.collect()
    before = _core.memory_status()["buffers_live"]
    opened = _core.decrypt_envelope(body, keypair, 100)
    assert _core.memory_status()["buffers_live"] > before
    del opened
    gc.collect()
    assert _core.memory_status()["buffers_live"] == before


def test_the_first_half_raises_for_the_envelope_and_the_second_for_the_plaintext(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    body = bytearray(sealed(client_public, b'{"a": 1}'))
    tampered = bytes(body).replace(b'"ciphertext": "', b'"ciphertext": "AAAA', 1)
    with pytest.raises(_core.CryptoError):
        _core.decrypt_envelope(tampered, keypair, 100)
    with pytest.raises(_core.EnvelopeError):
        _core.decrypt_envelope(b"not an envelope", keypair, 100)
    with pytest.raises(TypeError):
        _core.decrypt_envelope("text", keypair, 100)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        _core.decrypt_envelope(bytes(body), keypair, -1)
    # A plaintext that decrypts but is no JSON: the first half accepts it, the build refuses.
    opened = _core.decrypt_envelope(sealed(client_public, b'{"a": [1, 2'), keypair, 100)
    with pytest.raises(_core.EnvelopeError):
        opened.build()
    # Its plaintext is gone with the failed build: the envelope says so, and builds no more.
    assert "consumed" in repr(opened) and "not built" not in repr(opened)
    with pytest.raises(ValueError, match=r"already built \(or its build failed\)"):
        opened.build()


def structure_of(plaintext: bytes) -> int:
    """``structure_cost`` counted the slow way: ``cost_of`` without the backslashes."""
    return cost_of(plaintext) - plaintext.count(b"\\")


def test_the_structure_cost_is_the_build_cost_without_the_backslashes(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    rng = random.Random(11)
    for _ in range(40):
        value = {"choices": [random_json(rng) for _ in range(rng.randrange(1, 5))]}
        plaintext = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        body = sealed(client_public, plaintext)
        whole, structure = cost_of(plaintext), structure_of(plaintext)
        # Within the limit the build cost is whole and the structure cost is the same figure;
        # past it, the structure is counted too, to the same limit.
        within = _core.decrypt_envelope(body, keypair, whole)
        assert within.build_cost == within.structure_cost == whole
        for limit in {0, structure - 1, structure, whole - 1} - {-1}:
            opened = _core.decrypt_envelope(body, keypair, limit)
            if whole > limit:
                assert opened.build_cost > limit
                assert (opened.structure_cost > limit) == (structure > limit), limit
                if structure <= limit:
                    assert opened.structure_cost == structure
    # An answer of escaped non-ASCII text: dear by its backslashes, not by its structure.
    text = json.dumps({"a": "héllo wörld Ελλάδα 漢字 🔐 " * 20_000}).encode()
    opened = _core.decrypt_envelope(sealed(client_public, text), keypair, 4096)
    assert opened.build_cost > 4096
    assert opened.structure_cost == structure_of(text) == 3


# Strings long enough for the reader's looks at the clock within a long string (64 KiB on),
# each kind decoded its own way: escaped non-ASCII text (the wide decoder's vector step),
# escapes it leaves to its scalar steps, raw UTF-8 and Latin-1, ASCII with escapes, a lone
# surrogate among escaped text.
LONG_STRINGS = {
    "escaped mixed": "héllo wörld Ελλάδα 漢字 🔐 " * 4_000,
    "escaped quotes": '"' * 70_000,
    "escaped controls": "\x01\n" * 40_000,
    "escaped backslashes": "\\" * 70_000,
    "lone surrogates": "\ud800x" * 20_000,
    "raw mixed": "héllo wörld Ελλάδα 漢字 🔐 " * 4_000,
    "raw Latin-1": "déjà vu, naïve café " * 5_000,
    "ASCII with escapes": 'say "hi"\n' * 10_000,
    "surrogate among escapes": "漢字 " * 30_000 + "\ud800" + "🔐" * 10_000,
}


def long_answer(name: str) -> bytes:
    """An answer holding ``LONG_STRINGS[name]``, escaped as Python's json escapes it except
    for the raw kinds; its lone surrogates passed through as json.dumps writes them."""
    text = LONG_STRINGS[name]
    value = {"choices": [{"message": {"role": "assistant", "content": text}}], "n": [1, 2.5]}
    if name.startswith("raw"):
        return json.dumps(value, ensure_ascii=False).encode()
    return json.dumps(value).encode()


def test_a_build_within_a_deadline_builds_what_a_build_builds(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    rng = random.Random(13)
    plaintexts = [long_answer(name) for name in LONG_STRINGS]
    for _ in range(60):
        value = {"choices": [random_json(rng) for _ in range(rng.randrange(1, 5))]}
        plaintexts.append(json.dumps(value, ensure_ascii=rng.random() < 0.5).encode())
    for plaintext in plaintexts:
        body = sealed(client_public, plaintext, processed_at=7)
        built = _core.decrypt_envelope(body, keypair, 100).build_within(60.0)
        assert built is not None
        assert built == _core.open_envelope(body, keypair)


@pytest.mark.parametrize("name", sorted(LONG_STRINGS))
@pytest.mark.parametrize("seconds", [0.0, 0.0001])
def test_a_build_past_its_deadline_gives_up_and_keeps_the_plaintext_whole(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey, name: str, seconds: float
) -> None:
    # At 0 s a long string is never begun; at 0.1 ms a wide one is given up half-way (its
    # decoding looks at the clock), or not begun. Either way the plaintext is as it was (no
    # string decoded in place): the build afterwards reads the whole answer.
    body = sealed(client_public, long_answer(name))
    gc.collect()
    before = _core.memory_status()["buffers_live"]
    opened = _core.decrypt_envelope(body, keypair, 100)
    assert opened.build_within(seconds) is None
    assert "not built" in repr(opened)
    assert opened.build() == _core.open_envelope(body, keypair)
    with pytest.raises(ValueError, match="already built"):
        opened.build_within(60.0)
    del opened
    gc.collect()
    assert _core.memory_status()["buffers_live"] == before


@pytest.mark.parametrize("escaped", ['say "hi"\n', "\u00e9t\u00e9 \\ ", "\ud800\t"])
def test_short_strings_decoded_before_a_give_up_leave_the_plaintext_whole(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey, escaped: str
) -> None:
    # Short escaped strings (each decoded on its own, by the scalar reader or the wide one)
    # fill the first 64 KiB; the reader gives up at its look there, past them. A build that
    # decoded them in place would leave the rebuild garbled text or a JSON error.
    value = {"a": [escaped * 8] * 2_000, "b": "tail"}
    plaintext = json.dumps(value).encode()
    assert len(plaintext) > 64 << 10
    body = sealed(client_public, plaintext)
    opened = _core.decrypt_envelope(body, keypair, 100)
    assert opened.build_within(0.0) is None
    assert opened.build()[0] == json.loads(plaintext)


def test_the_clock_is_looked_at_every_64_kib_of_plaintext(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    # No string long enough to be looked at on its own: a small answer is built before the
    # first look, however short the time; 64 KiB of short values are not.
    small = sealed(client_public, json.dumps({"a": ["x" * 100] * 100}).encode())
    assert _core.decrypt_envelope(small, keypair, 100).build_within(0.0) is not None
    many = json.dumps({"a": ["x" * 100] * 1_000}).encode()
    assert len(many) > 64 << 10
    opened = _core.decrypt_envelope(sealed(client_public, many), keypair, 100)
    assert opened.build_within(0.0) is None
    assert opened.build()[0] == json.loads(many)


def test_a_build_within_a_deadline_refuses_a_malformed_plaintext_as_a_build_does(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    long_escaped = json.dumps("Ελλάδα " * 20_000)[:-1]
    for plaintext in (
        b'{"a": [1, 2',
        b'{"a": "\\x"}',
        b'{"a": "\x01"}',
        b'{"a": "\xff"}',
        ('{"a": ' + long_escaped + '\\q"}').encode(),
        ('{"a": ' + long_escaped).encode(),
        ('{"a": ' + long_escaped + '\x01"}').encode(),
    ):
        body = sealed(client_public, plaintext)
        with pytest.raises(_core.EnvelopeError) as expected:
            _core.decrypt_envelope(body, keypair, 100).build()
        opened = _core.decrypt_envelope(body, keypair, 100)
        with pytest.raises(_core.EnvelopeError) as within:
            opened.build_within(60.0)
        assert str(within.value) == str(expected.value)
        with pytest.raises(ValueError, match="already built"):
            opened.build()


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), -float("inf")])
def test_a_deadline_is_a_finite_time_from_now(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey, seconds: float
) -> None:
    opened = _core.decrypt_envelope(sealed(client_public, b'{"a": 1}'), keypair, 100)
    with pytest.raises(ValueError, match="finite"):
        opened.build_within(seconds)
    # Refused before anything was taken: the payload is still there.
    assert opened.build()[0] == {"a": 1}


def mixed_long_answer(rng: random.Random) -> bytes:
    """An answer of many long strings of every kind (as values and as keys), short escaped
    ones and numbers between them, so that a build gives up at a different place for each
    budget: inside a long string, between two, or at a look every 64 KiB."""
    names = sorted(LONG_STRINGS)
    parts: dict[str, Any] = {}
    for n in range(6):
        text = LONG_STRINGS[rng.choice(names)]
        cut = rng.randrange(len(text) // 2, len(text))
        parts[f"v{n}"] = text[:cut]
        parts[text[: rng.randrange(1, 5_000)] + f"#{n}"] = [rng.random(), 'say "hi"\n' * 3]
    return json.dumps(parts, ensure_ascii=rng.random() < 0.7).encode()


@pytest.mark.parametrize("seed", range(4))
def test_wherever_a_build_gives_up_the_build_after_it_reads_the_whole_answer(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey, seed: int
) -> None:
    # Budgets from 1 us to past the whole build: each run gives up somewhere else (or not at
    # all). Either way the payload is the answer's, and nothing of the build stays locked.
    rng = random.Random(seed)
    plaintext = mixed_long_answer(rng)
    body = sealed(client_public, plaintext)
    expected = _core.open_envelope(body, keypair)
    assert expected[0] == json.loads(plaintext)
    gc.collect()
    before = _core.memory_status()["buffers_live"]
    gave_up = built = 0
    for step in range(40):
        seconds = 1e-6 * 1.35**step
        opened = _core.decrypt_envelope(body, keypair, 100)
        payload = opened.build_within(seconds)
        if payload is None:
            gave_up += 1
            payload = opened.build()
        else:
            built += 1
        assert payload == expected, seconds
        del opened, payload
    gc.collect()
    assert _core.memory_status()["buffers_live"] == before
    # The sweep spans both outcomes: a give-up at 1 us and a whole build by ~0.1 s.
    assert gave_up and built, (gave_up, built)
