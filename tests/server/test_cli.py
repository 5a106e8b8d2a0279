"""``nomyo-native serve`` and ``nomyo-native demo`` as a user runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time

import httpx2
import pytest

from nomyo_native.cli import build_parser, config_from_args, main
from nomyo_native.server.recording import read_key_record_file

from .wire import PATH, WireClient, open_response


def test_serve_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--tls-self-signed",
        "--tls-cert",
        "--tpm",
        "--api-key",
        "--allow-model",
        "--backend",
        "--key-file",
        "NOMYO_SERVER_API_KEYS",
        "examples:",
    ):
        assert needle in text


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_serve_options_become_a_config(monkeypatch, tmp_path):
    monkeypatch.setenv("NOMYO_SERVER_API_KEYS", "env-key-1, env-key-2")
    args = build_parser().parse_args(
        [
            "serve",
            "--port", "0",
            "--api-key", "cli-key",
            "--allow-model", "maximum=a,b",
            "--allow-model", "high=c",
            "--default-tier", "high",
            "--tpm", "tcti:device:/dev/tpmrm0",
            "--tpm-scheme", "rsapss",
            "--backend", "http://127.0.0.1:11434",
            "--max-body-bytes", "65536",
            "--rate-limit", "30",
            "--record-keys-insecure", str(tmp_path / "keys.jsonl"),
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.api_keys == ("cli-key", "env-key-1", "env-key-2")
    assert config.tier_policy.allowed_models == {
        "maximum": frozenset({"a", "b"}),
        "high": frozenset({"c"}),
    }
    assert config.tier_policy.default_tier == "high"
    assert config.tpm == "tcti:device:/dev/tpmrm0"
    assert config.tpm_scheme == "rsapss"
    assert config.backend == "http://127.0.0.1:11434"
    assert config.max_body_bytes == 65536
    assert config.rate_limit_per_minute == 30
    assert config.record_keys is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key must be given together"),
        (["--tpm", "vtpm"], "tpm must be 'none', 'swtpm' or 'tcti:<tcti>'"),
        (["--allow-model", "secret=m"], "unknown security tier"),
        (["--allow-model", "high"], "expected TIER=MODEL"),
    ],
)
def test_bad_serve_options_exit_2_with_a_message(capsys, argv, message):
    assert main(["serve", "--port", "0", *argv]) == 2
    assert message in capsys.readouterr().err


def _read_banner(process: subprocess.Popen[str], timeout: float = 90.0) -> dict[str, str]:
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.match(
            r"\s+(listening|server key|TLS CA \(trust\)|TPM attestation|TPM state)\s+(.*)", line
        )
        if match:
            fields[match.group(1)] = match.group(2).strip()
        if "tier policy" in line:
            return fields
    raise AssertionError(f"no start-up banner; got {fields}")


@pytest.mark.slow
def test_serve_runs_until_interrupted(tmp_path, client_key):
    record_file = tmp_path / "keys.jsonl"
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "nomyo_native.cli", "serve",
                "--port", "0", "--tls-self-signed", "--tls-dir", str(tmp_path / "tls"),
                "--record-keys-insecure", str(record_file),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )  # fmt: skip
        try:
            banner = _read_banner(process)
            base_url = banner["listening"]
            assert base_url.startswith("https://127.0.0.1:")
            assert banner["TLS CA (trust)"] == str(tmp_path / "tls" / "ca.pem")
            assert banner["TPM attestation"].startswith("off")
            context = ssl.create_default_context(cafile=banner["TLS CA (trust)"])
            pem = httpx2.get(base_url + "/pki/public_key", verify=context).text
            wire = WireClient(base_url, pem, client_key, verify=context)
            pid, headers, body = wire.request(
                {"model": "m", "messages": [{"role": "user", "content": "via cli"}]}
            )
            response = httpx2.post(base_url + PATH, headers=headers, content=body, verify=context)
            assert response.status_code == 200
            reply, response_key = open_response(response.content, client_key)
            assert reply["choices"][0]["message"]["content"] == "via cli"
            # The CLI server disables core dumps for itself and says so.
            assert reply["_metadata"]["memory_protection"]["core_dump_prevention"] is True
            records = read_key_record_file(record_file)
            assert [r.payload_id for r in records] == [pid]
            assert records[0].response_aes_key == response_key
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
            process.stdout.close()
    assert code == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "KEY RECORDING IS ON" in log
    assert f"payload_id={pid} status=200" in log
    # The request's text never reaches the log.
    assert "via cli" not in log


@pytest.mark.slow
def test_demo_end_to_end():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "nomyo_native.cli", "demo", "--message", "demo says hi"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"server key\s+sha256:[0-9a-f]{64}", out)
    assert re.search(r"reply\s+demo says hi", out)
    assert "second request" in out
    if shutil.which("swtpm"):
        assert re.search(r"security tier\s+maximum", out)
        # The demo owns its swtpm and pins its persistent AIK: a rooted, key-bound quote.
        assert re.search(r"attestation\s+VERIFIED \(bound, hardware-rooted\)", out)
        assert "not relayed from another server" in out
    else:
        assert "swtpm is not installed" in out


def test_banner_warns_about_plain_http_off_loopback(http_endpoint):
    from nomyo_native.cli._serve_banner import describe as _describe
    from nomyo_native.server import ServerConfig

    local = _describe(http_endpoint, ServerConfig(host="127.0.0.1"))
    assert not any("non-loopback" in line for line in local)
    exposed = _describe(http_endpoint, ServerConfig(host="0.0.0.0", allow_open=True))
    assert any("plain HTTP on a non-loopback address" in line for line in exposed)
    tls = _describe(
        http_endpoint, ServerConfig(host="0.0.0.0", tls_self_signed=True, api_keys=("k",))
    )
    assert not any("non-loopback" in line for line in tls)


def test_demo_falls_back_clearly_without_swtpm(monkeypatch):
    from nomyo_native.cli import demo

    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    mode, note = demo._tpm_for_demo(no_tpm=False)
    assert mode == "none"
    assert "swtpm is not installed" in note and "apt-get install swtpm" in note
    assert demo._tpm_for_demo(no_tpm=True)[0] == "none"


@pytest.mark.slow
def test_demo_without_tpm_still_completes(capsys):
    assert main(["demo", "--no-tpm", "--message", "no tpm here"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"security tier\s+high", out)
    assert re.search(r"reply\s+no tpm here", out)
    assert "not available (the endpoint has no TPM)" in out
