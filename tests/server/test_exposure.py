"""Who can reach the endpoint and where its secrets live on disk (issue 10, item 15).

A non-loopback bind without API keys is refused unless ``--allow-open``; the key record file
is created ``O_EXCL|O_NOFOLLOW`` 0600; ``--tls-dir`` keeps the TLS identity across restarts,
reusing only files that are ours, private and not symlinks.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from nomyo_native.cli import main
from nomyo_native.server import ServerConfig, start_server
from nomyo_native.server.config import is_loopback_host
from nomyo_native.server.private_files import UnsafePathError
from nomyo_native.server.recording import KeyRecorder
from nomyo_native.server.tls import TlsDirError, load_or_create_tls_dir, make_self_signed

posix_only = pytest.mark.skipif(
    os.name != "posix", reason="file modes, owners and symlinks as POSIX has them"
)
NON_LOOPBACK = ["0.0.0.0", "::", "192.0.2.7", "10.0.0.1", "2001:db8::1", "example.org", ""]
LOOPBACK = ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("host", NON_LOOPBACK)
def test_open_non_loopback_bind_is_refused_without_api_keys(host):
    assert not is_loopback_host(host)
    with pytest.raises(ValueError, match="--allow-open"):
        ServerConfig(host=host)
    with pytest.raises(ValueError, match="your backend API key"):
        ServerConfig(host=host, backend_api_key="operator-key")
    # Keys, or the explicit opt-in, make it a choice rather than an accident.
    assert ServerConfig(host=host, api_keys=("k",)).is_open_to_network is False
    assert ServerConfig(host=host, allow_open=True).is_open_to_network is True


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_bind_needs_no_api_keys(host):
    assert is_loopback_host(host)
    assert ServerConfig(host=host).is_open_to_network is False


def test_open_non_loopback_bind_is_refused_by_the_cli(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "without API keys" in err and "--allow-open" in err


def test_open_non_loopback_bind_is_announced_at_start(http_endpoint):
    from nomyo_native.cli._serve_banner import describe as _describe

    lines = _describe(
        http_endpoint, ServerConfig(host="0.0.0.0", allow_open=True, backend_api_key="b")
    )
    assert any("OPEN ENDPOINT" in line and "backend API key" in line for line in lines)
    # The key itself is never printed.
    assert not any("b !!!" in line or "=b" in line for line in lines)


# ---- key record file -------------------------------------------------------------------


@posix_only
def test_key_record_file_is_created_exclusive_private_and_no_symlink(tmp_path):
    path = tmp_path / "keys.jsonl"
    with pytest.warns(RuntimeWarning):
        recorder = KeyRecorder(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    recorder.record("p1", b"\x01" * 32, b"\x02" * 32)
    recorder.close()
    # An existing file is never appended to (someone else may be able to read it).
    with pytest.warns(RuntimeWarning), pytest.raises(FileExistsError, match="already exists"):
        KeyRecorder(path)
    # A planted symlink, dangling or not, is not followed.
    target = tmp_path / "elsewhere"
    for existing in (False, True):
        if existing:
            target.write_text("untouched")
        link = tmp_path / f"link-{existing}"
        link.symlink_to(target)
        with pytest.warns(RuntimeWarning), pytest.raises(FileExistsError):
            KeyRecorder(link)
    assert target.read_text() == "untouched"


# ---- --tls-dir --------------------------------------------------------------------------


def _ca_fingerprint(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).fingerprint(hashes.SHA256())


def test_tls_dir_keeps_the_certificate_across_restarts(tmp_path, server_key):
    tls_dir = tmp_path / "tls"
    config = dict(port=0, server_key=server_key, tls_self_signed=True, tls_dir=tls_dir)
    with start_server(ServerConfig(**config)) as first:
        ca_before = _ca_fingerprint(first.ca_path)
        key_before = (tls_dir / "server-key.pem").read_bytes()
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(tls_dir).st_mode) == 0o700
        for name in ("ca.pem", "server.pem", "server-key.pem"):
            assert stat.S_IMODE(os.stat(tls_dir / name).st_mode) == 0o600
    with start_server(ServerConfig(**config)) as second:
        assert _ca_fingerprint(second.ca_path) == ca_before
        assert (tls_dir / "server-key.pem").read_bytes() == key_before
        # A client that trusted the first start's CA still connects.
        trust = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
        response = httpx2.get(second.base_url + "/health", verify=trust)
        assert response.status_code == 200


@posix_only
def test_tls_dir_refuses_symlinked_or_open_files(tmp_path):
    tls_dir = tmp_path / "tls"
    make_self_signed(tls_dir)
    key = tls_dir / "server-key.pem"
    for name in ("server-key.pem", "server.pem", "ca.pem"):
        os.chmod(tls_dir / name, 0o644)
        with pytest.raises(UnsafePathError, match="chmod 600"):
            load_or_create_tls_dir(tls_dir)
        os.chmod(tls_dir / name, 0o600)
    load_or_create_tls_dir(tls_dir)
    # A key swapped for a symlink (to a private file elsewhere) is refused, not followed.
    moved = tmp_path / "moved-key.pem"
    key.rename(moved)
    key.symlink_to(moved)
    with pytest.raises(UnsafePathError, match="symlink"):
        load_or_create_tls_dir(tls_dir)
    key.unlink()
    moved.rename(key)
    # The directory itself must be private and not a symlink.
    os.chmod(tls_dir, 0o755)
    with pytest.raises(UnsafePathError, match="chmod 700"):
        load_or_create_tls_dir(tls_dir)
    os.chmod(tls_dir, 0o700)
    link = tmp_path / "tls-link"
    link.symlink_to(tls_dir)
    with pytest.raises(UnsafePathError, match="symlink"):
        load_or_create_tls_dir(link)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown to another user"
)
def test_tls_dir_refuses_files_of_another_user(tmp_path):
    tls_dir = tmp_path / "tls"
    make_self_signed(tls_dir)
    os.chown(tls_dir / "server.pem", 65534, 65534)
    with pytest.raises(UnsafePathError, match="another user"):
        load_or_create_tls_dir(tls_dir)


def test_tls_dir_refuses_incomplete_or_mismatched_files(tmp_path):
    tls_dir = tmp_path / "tls"
    make_self_signed(tls_dir)
    (tls_dir / "server.pem").unlink()
    with pytest.raises(TlsDirError, match=r"not server\.pem"):
        load_or_create_tls_dir(tls_dir)
    # Nothing was regenerated over the remaining files.
    assert not (tls_dir / "server.pem").exists()
    # A key from another identity does not match the certificate.
    other = tmp_path / "other"
    make_self_signed(other)
    make_self_signed(tmp_path / "third")
    (tmp_path / "third" / "server-key.pem").unlink()
    os.rename(other / "server-key.pem", tmp_path / "third" / "server-key.pem")
    with pytest.raises(TlsDirError, match="is not the key of"):
        load_or_create_tls_dir(tmp_path / "third")
    # A certificate that does not name the bind address is refused, not silently replaced.
    fresh = tmp_path / "fresh"
    load_or_create_tls_dir(fresh)
    with pytest.raises(TlsDirError, match=r"does not name 192\.0\.2\.7"):
        load_or_create_tls_dir(fresh, ("localhost", "127.0.0.1", "::1", "192.0.2.7"))


def test_make_self_signed_never_overwrites(tmp_path):
    files = make_self_signed(tmp_path / "tls")
    before = files.key_path.read_bytes()
    with pytest.raises(FileExistsError):
        make_self_signed(tmp_path / "tls")
    assert files.key_path.read_bytes() == before
