"""Which certificate authorities the client trusts, through every way of telling it, on both
facades (the async client and the sync one): a loopback endpoint whose certificate comes from a
throwaway private CA is trusted through ``ca_bundle=``, ``verify=`` (a path or an
``SSLContext``), ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, and through the operating system's store
when that CA is in it; and it is refused when none of them names that CA.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nomyo_native as nomyo

MESSAGES = [{"role": "user", "content": "which CA?"}]
FACADES = ("async", "sync")


def complete(facade: str, base_url: str, **options: Any) -> dict[str, Any]:
    """One chat completion through ``facade`` with ``options``; the client closed afterwards."""
    options = {"key_size": 2048, "max_retries": 0, **options}
    if facade == "sync":
        with nomyo.SyncSecureChatCompletion(base_url=base_url, **options) as chat:
            return chat.create(model="m", messages=MESSAGES)

    async def run() -> dict[str, Any]:
        async with nomyo.SecureChatCompletion(base_url=base_url, **options) as chat:
            return await chat.create(model="m", messages=MESSAGES)

    return asyncio.run(run())


@pytest.fixture
def no_trust_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither SSL_CERT_FILE nor SSL_CERT_DIR set: the default store decides."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch


@pytest.fixture
def other_ca() -> Path:
    """A CA that did not issue the endpoint's certificate (certifi's public roots)."""
    import certifi

    return Path(certifi.where())


def hashed_dir(ca_path: Path, directory: Path) -> Path:
    """A directory in OpenSSL's ``capath`` layout (``<subject hash>.0``) holding ``ca_path``."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command (Debian package openssl) names capath files"
    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(ca_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    directory.mkdir()
    shutil.copy(ca_path, directory / f"{subject_hash}.0")
    return directory


def via_env(name: str, value: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(name, str(value))
    return {}


Trust = Callable[[Path, Path, pytest.MonkeyPatch], dict[str, Any]]

# Each way of trusting the endpoint's CA: (CA file, scratch dir, monkeypatch) -> client options.
TRUST: dict[str, Trust] = {
    "ca_bundle path": lambda ca, _tmp, _mp: {"ca_bundle": str(ca)},
    "ca_bundle PathLike": lambda ca, _tmp, _mp: {"ca_bundle": ca},
    "verify path": lambda ca, _tmp, _mp: {"verify": str(ca)},
    "verify SSLContext": lambda ca, _tmp, _mp: {"verify": ssl.create_default_context(cafile=ca)},
    "SSL_CERT_FILE": lambda ca, _tmp, mp: via_env("SSL_CERT_FILE", ca, mp),
    "SSL_CERT_DIR": lambda ca, tmp, mp: via_env("SSL_CERT_DIR", hashed_dir(ca, tmp / "c"), mp),
}


# SSL_CERT_DIR needs the openssl command to name its files (part of every Debian set-up).
HOWS = [
    pytest.param(how, marks=pytest.mark.linux_only) if how == "SSL_CERT_DIR" else how
    for how in sorted(TRUST)
]


@pytest.mark.parametrize("facade", FACADES)
@pytest.mark.parametrize("how", HOWS)
def test_the_private_ca_is_trusted_through(how, facade, secure_endpoint, no_trust_env, tmp_path):
    options = TRUST[how](secure_endpoint.ca_path, tmp_path, no_trust_env)
    completion = complete(facade, secure_endpoint.base_url, **options)
    assert completion["choices"][0]["message"]["content"]


@pytest.mark.parametrize("facade", FACADES)
def test_without_the_private_ca_the_endpoint_is_refused(facade, secure_endpoint, no_trust_env):
    with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as refused:
        complete(facade, secure_endpoint.base_url)
    assert "ca_bundle=" in str(refused.value)


@pytest.mark.parametrize("facade", FACADES)
def test_a_bundle_without_the_ca_is_refused(facade, secure_endpoint, no_trust_env, other_ca):
    with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        complete(facade, secure_endpoint.base_url, ca_bundle=str(other_ca))


@pytest.mark.parametrize("facade", FACADES)
def test_ca_bundle_wins_over_ssl_cert_file(facade, secure_endpoint, no_trust_env, other_ca):
    """An explicit option beats the environment, both ways round."""
    no_trust_env.setenv("SSL_CERT_FILE", str(other_ca))
    complete(facade, secure_endpoint.base_url, ca_bundle=str(secure_endpoint.ca_path))
    no_trust_env.setenv("SSL_CERT_FILE", str(secure_endpoint.ca_path))
    with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        complete(facade, secure_endpoint.base_url, ca_bundle=str(other_ca))


@pytest.mark.linux_only
@pytest.mark.parametrize("facade", FACADES)
def test_ssl_cert_file_wins_over_ssl_cert_dir(
    facade, secure_endpoint, no_trust_env, other_ca, tmp_path
):
    """SSL_CERT_FILE replaces every other store rather than adding to it (as with httpx)."""
    no_trust_env.setenv("SSL_CERT_DIR", str(hashed_dir(secure_endpoint.ca_path, tmp_path / "c")))
    complete(facade, secure_endpoint.base_url)
    no_trust_env.setenv("SSL_CERT_FILE", str(other_ca))
    with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        complete(facade, secure_endpoint.base_url)


# Run in a fresh interpreter: the OS store is what OpenSSL was built to read
# (ssl.get_default_verify_paths()), pointed here at the private CA before the client loads.
OS_STORE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, ssl, sys

    base_url, ca_file, facade = sys.argv[1:]
    if ca_file:
        compiled_in = ssl.get_default_verify_paths()
        ssl.get_default_verify_paths = lambda: compiled_in._replace(
            openssl_cafile=ca_file, openssl_capath="/nonexistent"
        )
    import nomyo_native as nomyo

    options = dict(base_url=base_url, key_size=2048, max_retries=0)
    messages = [{"role": "user", "content": "os store"}]

    async def run_async():
        async with nomyo.SecureChatCompletion(**options) as chat:
            return await chat.create(model="m", messages=messages)

    def run_sync():
        with nomyo.SyncSecureChatCompletion(**options) as chat:
            return chat.create(model="m", messages=messages)

    try:
        asyncio.run(run_async()) if facade == "async" else run_sync()
    except nomyo.APIConnectionError as exc:
        print(json.dumps({"trusted": False, "error": str(exc)}))
    else:
        print(json.dumps({"trusted": True}))
    """
)


def os_store_trusts(base_url: str, ca_file: str, facade: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
    done = subprocess.run(
        [sys.executable, "-c", OS_STORE_SCRIPT, base_url, ca_file, facade],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.linux_only
@pytest.mark.parametrize("facade", FACADES)
def test_the_default_is_the_os_trust_store(facade, secure_endpoint):
    """No option and no variable: the CAs OpenSSL reads by default (on Debian, the
    ca-certificates store), not a bundle shipped in a Python package."""
    trusted = os_store_trusts(secure_endpoint.base_url, str(secure_endpoint.ca_path), facade)
    assert trusted == {"trusted": True}
    untouched = os_store_trusts(secure_endpoint.base_url, "", facade)
    assert untouched["trusted"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in untouched["error"]
