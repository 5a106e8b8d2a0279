"""Which TLS a client's trust settings select (``_tls``): the core's (a ``CoreTlsContext``) for
every CA file or directory, the interpreter's OpenSSL for a caller's own ``SSLContext`` and
the macOS/Windows OS store; the Linux default store is the files httpcore2's default context
reads; each context is built once per process and trust store."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpcore2._ssl
import pytest

import nomyo_native as nomyo
from nomyo_native import _core_tls, _tls
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._sync_core_tls import CoreTlsStream

from .test_core_tls_context import subject_hash
from .tls_certs import Authority


@pytest.fixture
def no_trust_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch


@pytest.fixture
def fresh_caches() -> None:
    """Contexts built by this test only (the process keeps one per trust store)."""
    _tls._file_context.cache_clear()
    _tls._default_tls_context.cache_clear()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return Authority.create(tmp_path / "ca").path


def test_a_ca_file_selects_the_cores_tls_however_it_is_named(ca, no_trust_env, fresh_caches):
    for context in (
        _tls.tls_context(True, str(ca)),
        _tls.tls_context(True, ca),
        _tls.tls_context(str(ca), None),
    ):
        assert isinstance(context, CoreTlsContext)
        assert context.core_config.root_count == 1
    no_trust_env.setenv("SSL_CERT_FILE", str(ca))
    assert isinstance(_tls.tls_context(True, None), CoreTlsContext)


@pytest.mark.linux_only
def test_a_ca_directory_selects_the_cores_tls(ca, tmp_path, no_trust_env, fresh_caches):
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / f"{subject_hash(ca)}.0").symlink_to(ca)
    no_trust_env.setenv("SSL_CERT_DIR", str(directory))
    context = _tls.tls_context(True, None)
    assert isinstance(context, CoreTlsContext)
    assert context.core_config.root_count == 1


def test_a_callers_own_context_stays_on_openssl(ca):
    own = ssl.create_default_context(cafile=str(ca))
    assert _tls.tls_context(own, None) is own


def test_the_macos_and_windows_store_stays_on_openssl(no_trust_env, fresh_caches):
    for system in ("Darwin", "Windows"):
        no_trust_env.setattr(_tls.platform, "system", lambda system=system: system)
        _tls._default_tls_context.cache_clear()
        assert _tls.os_store_locations() is None
        assert not isinstance(_tls.tls_context(True, None), CoreTlsContext)


def test_each_trust_store_is_built_once_and_again_when_its_file_changes(ca, fresh_caches):
    first = _tls.tls_context(True, str(ca))
    assert _tls.tls_context(str(ca), None) is first
    ca.write_bytes(ca.read_bytes() + Authority.create(ca.parent / "more", "CA 2").path.read_bytes())
    second = _tls.tls_context(True, str(ca))
    assert second is not first
    assert isinstance(second, CoreTlsContext) and second.core_config.root_count == 2


def test_a_store_the_core_cannot_use_keeps_openssl_with_the_same_trust(
    ca, monkeypatch, fresh_caches
):
    def refuse(*_args: object) -> None:
        raise ValueError("no usable CA certificate in the trust store")

    monkeypatch.setattr(_core_tls._core, "TlsConfig", refuse)
    context = _tls.tls_context(True, str(ca))
    assert not isinstance(context, CoreTlsContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1


# ---- the Linux default store -----------------------------------------------------------------


def test_the_fallback_bundles_are_httpcore2s():
    assert list(_tls.CA_FILE_CANDIDATES) == httpcore2._ssl.CA_FILE_CANDIDATES


def compiled_in(monkeypatch: pytest.MonkeyPatch, cafile: Path, capath: Path) -> None:
    paths = ssl.get_default_verify_paths()
    monkeypatch.setattr(_tls.platform, "system", lambda: "Linux")
    monkeypatch.setattr(
        _tls.ssl,
        "get_default_verify_paths",
        lambda: paths._replace(openssl_cafile=str(cafile), openssl_capath=str(capath)),
    )


def test_the_linux_store_is_openssls_compiled_in_file_and_directory(ca, tmp_path, monkeypatch):
    compiled_in(monkeypatch, ca, tmp_path)
    assert _tls.os_store_locations() == (str(ca), str(tmp_path))
    compiled_in(monkeypatch, ca, tmp_path / "missing")
    assert _tls.os_store_locations() == (str(ca), None)


def test_a_directory_without_hashed_names_is_no_store(ca, tmp_path, monkeypatch):
    """As httpcore2: with no compiled-in file, a directory holding nothing OpenSSL looks up
    is passed over for the first bundle of the usual places."""
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "README").write_text("not a certificate")
    compiled_in(monkeypatch, tmp_path / "missing.pem", directory)
    monkeypatch.setattr(_tls, "CA_FILE_CANDIDATES", (str(tmp_path / "nope.pem"), str(ca)))
    assert _tls.os_store_locations() == (str(ca), None)
    (directory / "0123abcd.0").symlink_to(ca)
    assert _tls.os_store_locations() == (None, str(directory))
    monkeypatch.setattr(_tls, "CA_FILE_CANDIDATES", ())
    (directory / "0123abcd.0").unlink()
    assert _tls.os_store_locations() is None


def test_the_linux_default_selects_the_cores_tls(ca, tmp_path, no_trust_env, fresh_caches):
    compiled_in(no_trust_env, ca, tmp_path / "missing")
    context = _tls.tls_context(True, None)
    assert isinstance(context, CoreTlsContext)
    assert context.core_config.root_count == 1


# ---- through the sync client -----------------------------------------------------------------


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> list[CoreTlsStream]:
    streams: list[CoreTlsStream] = []
    connect = CoreTlsStream.connect.__func__  # type: ignore[attr-defined]

    def recording(cls: type[CoreTlsStream], *args: object) -> CoreTlsStream:
        streams.append(connect(cls, *args))
        return streams[-1]

    monkeypatch.setattr(CoreTlsStream, "connect", classmethod(recording))
    return streams


def ask(base_url: str, **options: object) -> str:
    with nomyo.SyncSecureChatCompletion(
        base_url=base_url, key_size=2048, max_retries=0, **options
    ) as chat:
        completion = chat.create(model="m", messages=[{"role": "user", "content": "which TLS?"}])
    return str(completion["choices"][0]["message"]["content"])


def test_ca_bundle_runs_the_sync_client_on_the_cores_tls(secure_endpoint, connected):
    assert ask(secure_endpoint.base_url, ca_bundle=str(secure_endpoint.ca_path))
    assert connected, "no connection went through the core's TLS"


def test_verify_with_a_context_runs_the_sync_client_on_openssl(secure_endpoint, connected):
    own = ssl.create_default_context(cafile=os.fspath(secure_endpoint.ca_path))
    assert ask(secure_endpoint.base_url, verify=own)
    assert connected == []
