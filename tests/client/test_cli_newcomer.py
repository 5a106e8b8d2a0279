"""Issue 13, client side of the CLI: ``nomyo-native pin``, one password rule for new keys, and
messages that name the flags the user typed (``--base-url``, ``--allow-http``, ``--pin``,
``--ca-bundle``) rather than Python parameters."""

from __future__ import annotations

import json
import warnings

import pytest

import nomyo_native as nomyo
from nomyo_native.cli import main

PASSWORD = "cli-password-123"
PYTHON_SPELLINGS = (
    "allow_http=",
    "ca_bundle=",
    "server_key_fingerprint=",
    "router_url",
    "base_url=",
)


def _assert_cli_words_only(err: str) -> None:
    for spelling in PYTHON_SPELLINGS:
        assert spelling not in err, f"{spelling!r} named in a CLI message: {err}"


# ---- nomyo-native pin ------------------------------------------------------------------------


def test_pin_prints_the_server_key_fingerprint(secure_endpoint, capsys):
    code = main(["pin", secure_endpoint.base_url, "--ca-bundle", str(secure_endpoint.ca_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == secure_endpoint.server_key_fingerprint
    assert f"--pin {secure_endpoint.server_key_fingerprint}" in captured.err


def test_pin_never_prints_credentials_in_the_url(secure_endpoint, tmp_path, capsys):
    # A base URL with user:password (a proxy's Basic auth) is used, never echoed.
    url = secure_endpoint.base_url.replace("://", "://pinuser:Pin-Passw0rd@")
    pin_file = tmp_path / "pins.json"
    ca = str(secure_endpoint.ca_path)
    assert main(["pin", url, "--ca-bundle", ca, "--write", str(pin_file)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == secure_endpoint.server_key_fingerprint
    for said in (captured.out, captured.err, pin_file.read_text()):
        assert "Pin-Passw0rd" not in said and "pinuser" not in said


def test_pin_writes_the_pin_file_and_chat_uses_it(secure_endpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    pin_file = tmp_path / "pins.json"
    ca = str(secure_endpoint.ca_path)
    assert main(["pin", secure_endpoint.base_url, "--ca-bundle", ca, "--write", str(pin_file)]) == 0
    capsys.readouterr()
    assert json.loads(pin_file.read_text()) == {
        secure_endpoint.base_url: secure_endpoint.server_key_fingerprint
    }
    chat = ["chat", "--base-url", secure_endpoint.base_url, "--ca-bundle", ca]
    assert main([*chat, "--pin-file", str(pin_file), "pinned hello"]) == 0
    assert capsys.readouterr().out.strip() == "pinned hello"
    # A different key recorded for that server is refused, naming the mismatch.
    pin_file.write_text(json.dumps({secure_endpoint.base_url: "sha256:" + "0" * 64}))
    assert main([*chat, "--pin-file", str(pin_file), "hello"]) == 1
    assert "differs" in capsys.readouterr().err


def test_pin_over_tls_that_does_not_verify_names_ca_bundle_flag(
    secure_endpoint, capsys, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert main(["pin", secure_endpoint.base_url]) == 1
    err = capsys.readouterr().err
    assert "--ca-bundle" in err and "SSL_CERT_FILE" in err
    _assert_cli_words_only(err)


def test_pin_of_an_http_url_needs_allow_http(capsys):
    assert main(["pin", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "--allow-http" in err
    _assert_cli_words_only(err)


def test_pin_of_a_bad_url_is_bad_input(capsys):
    assert main(["pin", "ftp://example.test"]) == 2
    err = capsys.readouterr().err
    assert "--base-url" in err or "URL" in err
    _assert_cli_words_only(err)


# ---- the CLI names its own flags ----------------------------------------------------------------


def test_chat_over_http_without_the_flag_names_allow_http_flag(capsys):
    assert main(["chat", "--base-url", "http://127.0.0.1:9", "hello"]) == 1
    err = capsys.readouterr().err
    assert "--allow-http" in err
    _assert_cli_words_only(err)


def test_chat_with_a_malformed_pin_names_the_pin_flag(capsys):
    assert main(["chat", "--pin", "sha256:zz", "hello"]) == 2
    err = capsys.readouterr().err
    assert "--pin" in err and "nomyo-native pin" in err
    _assert_cli_words_only(err)


def test_chat_with_a_wrong_pin_names_the_pin_flag(secure_endpoint, capsys):
    wrong = "sha256:" + "11" * 32
    args = ["chat", "--base-url", secure_endpoint.base_url, "--pin", wrong, "hello"]
    assert main([*args, "--ca-bundle", str(secure_endpoint.ca_path)]) == 1
    err = capsys.readouterr().err
    assert f"--pin {wrong}" in err and "nomyo-native pin" in err
    _assert_cli_words_only(err)


def test_chat_to_a_base_url_with_v1_names_the_base_url_flag(secure_endpoint, capsys):
    url = secure_endpoint.base_url + "/v1"
    args = ["chat", "--base-url", url, "--ca-bundle", str(secure_endpoint.ca_path), "hi"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"--base-url {secure_endpoint.base_url}" in err and "without /v1" in err
    _assert_cli_words_only(err)


def test_python_callers_still_get_python_spellings():
    with pytest.raises(nomyo.SecurityError, match=r"allow_http=True"):
        import asyncio

        async def fetch() -> None:
            await nomyo.SecureCompletionClient("http://127.0.0.1:9").fetch_server_public_key()

        asyncio.run(fetch())
    with pytest.raises(ValueError, match=r"server_key_fingerprint="):
        nomyo.SecureChatCompletion(server_key_fingerprint="sha256:...")


# ---- key passwords ------------------------------------------------------------------------------


def test_chat_key_dir_new_without_password_is_refused_like_keys_generate(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    key_dir = tmp_path / "new-keys"
    assert main(["chat", "--key-dir", str(key_dir), "--base-url", "https://127.0.0.1:9", "hi"]) == 2
    err = capsys.readouterr().err
    assert "NOMYO_KEY_PASSWORD" in err and "--unencrypted" in err
    assert not key_dir.exists(), "nothing written"
    # keys generate says the same.
    assert main(["keys", "generate", str(key_dir), "--bits", "2048"]) == 2
    assert "NOMYO_KEY_PASSWORD" in capsys.readouterr().err and not key_dir.exists()


def test_chat_key_dir_unencrypted_flag_allows_it(secure_endpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    key_dir = tmp_path / "new-keys"
    args = [
        "chat",
        "--key-dir",
        str(key_dir),
        "--unencrypted",
        "--base-url",
        secure_endpoint.base_url,
        "--ca-bundle",
        str(secure_endpoint.ca_path),
        "hi",
    ]
    with pytest.warns(UserWarning, match="UNENCRYPTED"):
        assert main(args) == 0
    assert (key_dir / "private_key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_chat_key_dir_with_an_encrypted_key_and_no_password_names_the_variable(
    secure_endpoint, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    key_dir = tmp_path / "keys"
    assert main(["keys", "generate", str(key_dir), "--bits", "2048"]) == 0
    monkeypatch.delenv("NOMYO_KEY_PASSWORD")
    capsys.readouterr()
    ca = str(secure_endpoint.ca_path)
    args = ["chat", "--key-dir", str(key_dir), "--base-url", secure_endpoint.base_url]
    code = main([*args, "--ca-bundle", ca, "hi"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "NOMYO_KEY_PASSWORD" in err and "key_password=" not in err


@pytest.mark.parametrize("given", [None, "wrong password 123"])
def test_library_key_password_errors_name_both_spellings(tmp_path, monkeypatch, given):
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    writer = nomyo.SecureCompletionClient(key_size=2048)
    writer.generate_keys(save_to_file=True, key_dir=str(tmp_path), password=PASSWORD)
    reader = nomyo.SecureCompletionClient()
    with pytest.raises(nomyo.KeyLoadError) as failed:
        reader.load_keys(str(tmp_path / "private_key.pem"), password=given)
    assert "key_password=" in str(failed.value) and "NOMYO_KEY_PASSWORD" in str(failed.value)


def test_library_keeps_saving_unencrypted_without_a_password_but_warns(tmp_path, monkeypatch):
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    client = nomyo.SecureCompletionClient(key_size=2048)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.generate_keys(save_to_file=True, key_dir=str(tmp_path))
    assert any("UNENCRYPTED" in str(w.message) for w in caught)
    assert (tmp_path / "private_key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_chat_over_tls_that_does_not_verify_names_the_ca_bundle_flag(
    secure_endpoint, capsys, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert main(["chat", "--base-url", secure_endpoint.base_url, "--max-retries", "3", "hi"]) == 1
    err = capsys.readouterr().err
    assert "--ca-bundle" in err and "SSL_CERT_FILE" in err and "Not retried" in err
    _assert_cli_words_only(err)
