"""Review: odd trust-store settings never turn verification off or weaken it. Each either fails
with a typed error naming the problem, or gives a context that requires certificates and
checks host names (the OpenSSL fallback with nothing trusted refuses every server)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomyo_native import _tls
from nomyo_native.errors import SecurityError


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    _tls._default_tls_context.cache_clear()
    _tls._file_context.cache_clear()
    yield
    _tls._default_tls_context.cache_clear()
    _tls._file_context.cache_clear()


def test_verify_false_is_refused() -> None:
    with pytest.raises(SecurityError):
        _tls.tls_context(False, None)


@pytest.mark.parametrize("verify", [0, 1, []])
def test_a_verify_value_of_another_type_is_a_type_error(verify: object) -> None:
    """0 is falsy as False is: it must not pass for "no verification" nor for a file."""
    with pytest.raises(TypeError):
        _tls.tls_context(verify, None)  # type: ignore[arg-type]


def test_an_unverifying_context_is_refused() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(SecurityError):
        _tls.tls_context(context, None)


@pytest.mark.parametrize("how", ["ca_bundle", "verify"])
def test_a_ca_path_that_is_a_directory_or_empty_fails_typed(tmp_path: Path, how: str) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    for path, error in ((tmp_path, IsADirectoryError), (empty, ssl.SSLError)):
        with pytest.raises(error):
            if how == "ca_bundle":
                _tls.tls_context(True, str(path))
            else:
                _tls.tls_context(str(path), None)


def test_ssl_cert_file_naming_a_directory_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SSL_CERT_FILE"):
        _tls.tls_context(True, None)


def test_ssl_cert_file_empty_fails_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    with pytest.raises(ssl.SSLError):
        _tls.tls_context(True, None)


@pytest.mark.parametrize("directory", ["empty", "missing"])
def test_ssl_cert_dir_with_nothing_usable_still_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str
) -> None:
    path = tmp_path / directory
    if directory == "empty":
        path.mkdir()
    monkeypatch.setenv("SSL_CERT_DIR", str(path))
    context = _tls.tls_context(True, None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0  # trusts nothing: refuses every server
