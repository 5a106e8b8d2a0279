"""Hostile and mutated key files: a typed key error within a time bound, never a crash.

The hostile files are the load_key fuzz target's regression seeds (``fuzz/seeds/load_key``,
first byte = the target's mode): PBES2 parameters that once panicked inside pkcs5 (scrypt cost
0) or would make the KDF allocate 128 * r * N bytes or run for hours. Loading runs in a child
process, so that an abort would fail the test instead of killing the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nomyo_native as nomyo
from nomyo_native import _core

from .envelopes import CALL_TIME_BOUND, timed

SEEDS = Path(__file__).resolve().parents[2] / "fuzz" / "seeds" / "load_key"
SEED_PASSWORD = "fuzz-password"
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEY_ERRORS = (_core.KeyFormatError, _core.KeyPasswordError)


def _seed(name: str) -> bytes:
    return (SEEDS / name).read_bytes()[1:]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in SEEDS.glob("regress-*")),
)
def test_hostile_kdf_parameters_are_a_key_format_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "private_key.pem"
    path.write_bytes(_seed(name))
    path.chmod(0o600)
    probe = textwrap.dedent(
        """
        import sys, time
        from nomyo_native import _core
        started = time.monotonic()
        try:
            _core.ClientKeyPair.load(sys.argv[1], sys.argv[2])
        except _core.KeyFormatError as exc:
            print("KeyFormatError", round(time.monotonic() - started, 3), exc)
        else:
            print("loaded")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path), SEED_PASSWORD],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"the loader died: {done.returncode} {done.stderr[-2000:]}"
    verdict, seconds, *message = done.stdout.split(maxsplit=2)
    assert verdict == "KeyFormatError", done.stdout
    assert float(seconds) < CALL_TIME_BOUND
    assert "parameters are invalid" in message[0] or "iteration count" in message[0]


def test_client_load_keys_maps_hostile_files_to_key_load_error(tmp_path: Path) -> None:
    path = tmp_path / "private_key.pem"
    path.write_bytes(_seed("regress-scrypt-huge-memory"))
    path.chmod(0o600)
    client = nomyo.SecureCompletionClient("https://peer.invalid")
    with pytest.raises(nomyo.KeyLoadError):
        client.load_keys(str(path), password=SEED_PASSWORD)


def _load(path: Path, pem: bytes, password: str | None) -> BaseException | None:
    path.write_bytes(pem)
    path.chmod(0o600)
    _, exc, elapsed = timed(lambda: _core.ClientKeyPair.load(path, password))
    assert elapsed < CALL_TIME_BOUND
    return exc


def _mutate(data: st.DataObject, pem: bytes) -> bytes:
    body = bytearray(pem)
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 4))):
            body[data.draw(st.integers(0, len(body) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(body)
    return bytes(body[: data.draw(st.integers(0, len(body) - 1))])


@SETTINGS
@given(data=st.data(), encrypted=st.booleans())
def test_mutated_private_key_files(tmp_path_factory, data: st.DataObject, encrypted: bool) -> None:
    pem = _seed("pbes2-pbkdf2" if encrypted else "pkcs8")
    path = tmp_path_factory.mktemp("keys") / "private_key.pem"
    exc = _load(path, _mutate(data, pem), SEED_PASSWORD if encrypted else None)
    # A flip may land in a PEM line break or leave a still-valid key: loading is then fine.
    if exc is not None:
        assert isinstance(exc, KEY_ERRORS), repr(exc)


@SETTINGS
@given(data=st.data())
def test_mutated_server_public_keys(data: st.DataObject) -> None:
    pem = _seed("spki")
    key, exc, elapsed = timed(lambda: _core.ServerPublicKey.from_pem(_mutate(data, pem)))
    assert elapsed < CALL_TIME_BOUND
    if exc is None:
        assert key.bits >= _core.MIN_RSA_BITS
    else:
        assert isinstance(exc, _core.KeyFormatError), repr(exc)


def test_short_and_non_rsa_keys_are_refused(tmp_path: Path) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for private in (short, ec_key):
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert isinstance(_load(tmp_path / "k.pem", pem, None), _core.KeyFormatError)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(_core.KeyFormatError):
            _core.ServerPublicKey.from_pem(public)


def test_key_file_larger_than_any_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "private_key.pem"
    with path.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: no disk space used
    os.chmod(path, 0o600)
    _, exc, elapsed = timed(lambda: _core.ClientKeyPair.load(path))
    assert elapsed < CALL_TIME_BOUND
    assert isinstance(exc, _core.KeyFormatError), repr(exc)
