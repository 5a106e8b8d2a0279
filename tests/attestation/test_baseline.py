"""PCR baselines: capture from a trusted quote, save, load back, refuse what is malformed."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from nomyo_native.attestation import (
    BASELINE_FORMAT,
    BaselineError,
    capture_baseline,
    load_baseline,
    save_baseline,
    verify_attestation,
)

PAYLOAD_ID = "a1b2c3d4-0000-4000-8000-baseline0001"


@pytest.fixture(scope="module")
def block(tpm_quoter: Any) -> dict[str, Any]:
    return tpm_quoter.quote(PAYLOAD_ID, scheme="ecdsa")


def test_capture_holds_the_quoted_values(block: dict[str, Any]) -> None:
    baseline = capture_baseline(block, PAYLOAD_ID)
    assert baseline["format"] == BASELINE_FORMAT
    assert baseline["pcr_banks"] == block["pcr_banks"]
    assert baseline["pcr_values"] == block["pcr_values"]
    assert baseline["aik_fingerprint"] == verify_attestation(block, PAYLOAD_ID).aik_fingerprint


def test_file_round_trip(block: dict[str, Any], tmp_path: Path) -> None:
    baseline = capture_baseline(block, PAYLOAD_ID)
    path = tmp_path / "baseline.json"
    save_baseline(baseline, path)
    assert json.loads(path.read_text()) == baseline
    assert load_baseline(path) == load_baseline(baseline)
    assert load_baseline(str(path))["sha256"][10] == bytes.fromhex(
        block["pcr_values"]["sha256"]["10"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # no temp file left
    result = verify_attestation(block, PAYLOAD_ID, pcr_baseline=path)
    assert result.pcr_baseline.passed is True and result.bound


def test_bare_bank_mapping_is_accepted(block: dict[str, Any]) -> None:
    bare = {"sha256": {"7": block["pcr_values"]["sha256"]["7"].upper()}}
    assert load_baseline(bare) == {"sha256": {7: bytes.fromhex(bare["sha256"]["7"])}}
    assert verify_attestation(block, PAYLOAD_ID, pcr_baseline=bare).pcr_baseline.passed is True


def test_capture_refuses_an_unverified_quote(block: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(block["signature_b64"]))
    sig[-1] ^= 1
    bad = dict(block, signature_b64=base64.b64encode(bytes(sig)).decode())
    with pytest.raises(BaselineError, match="signature"):
        capture_baseline(bad, PAYLOAD_ID)
    with pytest.raises(BaselineError, match="qualifying_data"):
        capture_baseline(block, "not-the-request")
    with pytest.raises(BaselineError, match="no TPM"):
        capture_baseline({"is_available": False})
    # Without a payload id the binding is not required (the user vouches for the response).
    assert capture_baseline(block)["pcr_values"] == block["pcr_values"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"sha1024": {"0": "00"}}', "unknown PCR bank"),
        ('{"sha256": {"0": "abcd"}}', "must be 32 bytes"),
        ('{"sha256": {"24": "' + "00" * 32 + '"}}', "out of range"),
        ('{"sha256": {"07": "' + "00" * 32 + '"}}', "decimal number"),
        ('{"sha256": {}}', "lists no PCR values"),
        ('{"format": "other/v9", "pcr_values": {}}', "unsupported baseline format"),
    ],
)
def test_malformed_baseline_file_is_a_baseline_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(path)


def test_missing_file_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot read"):
        load_baseline(tmp_path / "absent.json")
    with pytest.raises(BaselineError, match="mapping or a file path"):
        load_baseline(42)  # type: ignore[arg-type]
    assert issubclass(BaselineError, ValueError)


def test_save_refuses_what_it_could_not_load(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    with pytest.raises(BaselineError):
        save_baseline({"sha256": {"0": "xx"}}, path)
    assert not path.exists()
    assert not os.listdir(tmp_path)
