"""``nomyo-native attest baseline`` and ``attest verify`` through ``main([...])``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from tpm2_pytss.types import TPM2B_PUBLIC

from nomyo_native.attestation import aik_fingerprint, load_baseline
from nomyo_native.cli import main

PAYLOAD_ID = "c0ffee00-1234-4abc-8def-0123456789ab"


def save_response(path: Path, block: dict[str, Any], payload_id: str = PAYLOAD_ID) -> Path:
    """A response as a user would save it: content plus ``_metadata``."""
    response = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "_metadata": {"payload_id": payload_id, "tpm_attestation": block},
    }
    path.write_text(json.dumps(response))
    return path


@pytest.fixture
def saved(tmp_path: Path, tpm_quoter: Any) -> Path:
    return save_response(tmp_path / "response.json", tpm_quoter.quote(PAYLOAD_ID))


def test_baseline_then_verify(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    baseline = tmp_path / "baseline.json"
    code = main(["attest", "baseline", str(saved), "--payload-id", PAYLOAD_ID, "-o", str(baseline)])
    assert code == 0
    assert "written to" in capsys.readouterr().out
    block = json.loads(saved.read_text())["_metadata"]["tpm_attestation"]
    assert load_baseline(baseline) == load_baseline(block["pcr_values"])

    code = main(
        ["attest", "verify", str(saved), "--payload-id", PAYLOAD_ID, "--baseline", str(baseline)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("signature", "magic_and_type", "qualifying_data", "pcr_digest", "pcr_baseline"):
        assert f"ok   {name}" in out
    assert "-    aik_trusted" in out
    assert f"AIK  {aik_fingerprint(block['aik_pubkey_b64'])}" in out
    # Issue 11: an unpinned quote is reported as bound, not verified (exit 0: bound was asked).
    assert "verdict: BOUND (not hardware-rooted)" in out
    assert "not genuine TPM hardware" in out


def test_baseline_to_stdout_and_from_stdin(
    saved: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(saved.read_text()))
    assert main(["attest", "baseline", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    block = json.loads(saved.read_text())["_metadata"]["tpm_attestation"]
    assert printed["pcr_values"] == block["pcr_values"]
    assert printed["pcr_banks"] == "sha256:0,7,10"


def test_verify_for_another_request_fails(saved: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["attest", "verify", str(saved), "--payload-id", "other-request"]) == 1
    out = capsys.readouterr().out
    assert "FAIL qualifying_data" in out
    assert "ok   signature" in out
    assert "verdict: NOT BOUND" in out


def test_verify_json_output_and_aik_pins(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    block = json.loads(saved.read_text())["_metadata"]["tpm_attestation"]
    fingerprint = aik_fingerprint(block["aik_pubkey_b64"])
    args = ["attest", "verify", str(saved), "--payload-id", PAYLOAD_ID, "--json"]
    assert main([*args, "--trusted-aik", fingerprint]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["verified"] is True and record["hardware_rooted"] is True
    assert record["checks"]["aik_trusted"]["passed"] is True

    import base64

    public = TPM2B_PUBLIC.unmarshal(base64.b64decode(block["aik_pubkey_b64"]))[0]
    pem = tmp_path / "aik.pem"
    pem.write_bytes(public.publicArea.to_pem())
    assert main([*args, "--trusted-aik", str(pem)]) == 0
    capsys.readouterr()
    assert main([*args, "--trusted-aik", "sha256:" + "ab" * 32]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["checks"]["aik_trusted"]["passed"] is False
    assert [n for n, c in record["checks"].items() if c["passed"] is False] == ["aik_trusted"]


def test_pcr_extended_after_the_baseline(
    saved: Path, tmp_path: Path, tpm_quoter: Any, capsys: pytest.CaptureFixture
) -> None:
    baseline = tmp_path / "baseline.json"
    assert main(["attest", "baseline", str(saved), "-o", str(baseline)]) == 0
    tpm_quoter.pcr_extend(7, b"secure boot policy changed")
    later = save_response(tmp_path / "later.json", tpm_quoter.quote("later-id"), "later-id")
    capsys.readouterr()
    args = ["attest", "verify", str(later), "--payload-id", "later-id", "--baseline", str(baseline)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAIL pcr_baseline" in out and "sha256:7" in out
    assert "ok   pcr_digest" in out


def test_tampered_file_is_refused_as_a_baseline(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = json.loads(saved.read_text())
    data["_metadata"]["tpm_attestation"]["pcr_values"]["sha256"]["0"] = "11" * 32
    saved.write_text(json.dumps(data))
    out_file = tmp_path / "baseline.json"
    assert main(["attest", "baseline", str(saved), "-o", str(out_file)]) == 2
    assert "pcr_digest" in capsys.readouterr().err
    assert not out_file.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{broken", "not valid JSON"),
        ('{"_metadata": {"payload_id": "x"}}', "no tpm_attestation block"),
    ],
)
def test_bad_input_files_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str | None, message: str
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    assert main(["attest", "verify", str(path), "--payload-id", PAYLOAD_ID]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nomyo-native attest: error:") and message in err


def test_bad_baseline_or_pin_exit_2(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad-baseline.json"
    bad.write_text('{"sha256": {"0": "00"}}')
    args = ["attest", "verify", str(saved), "--payload-id", PAYLOAD_ID]
    assert main([*args, "--baseline", str(bad)]) == 2
    assert "must be 32 bytes" in capsys.readouterr().err
    assert main([*args, "--trusted-aik", str(tmp_path / "missing.pem")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_usage_errors(saved: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["attest", "verify", str(saved)])  # --payload-id is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["attest"])
    assert exc.value.code == 2
