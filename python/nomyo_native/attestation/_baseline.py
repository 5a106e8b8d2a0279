"""PCR baseline files: the known-good PCR values a quote is compared with, as a mapping or a
JSON file (``nomyo-native attest baseline`` writes them; :func:`capture_baseline` makes one)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nomyo_native.attestation._pcr import PcrValues, normalize_values, values_to_json

BASELINE_FORMAT = "nomyo-native/pcr-baseline/v1"
_MAX_BASELINE_FILE_BYTES = 1024 * 1024


class BaselineError(ValueError):
    """A PCR baseline (dict or JSON file) is malformed, or could not be captured."""


def load_baseline(source: Mapping[str, Any] | str | os.PathLike[str]) -> PcrValues:
    """Normalize a baseline: a dict, or the path of a JSON file, to ``{bank: {index: bytes}}``.

    Accepts the :func:`capture_baseline` format or a bare ``{"sha256": {"0": "<hex>"}}``.
    """
    if isinstance(source, (str, os.PathLike)):
        data = _read_baseline_file(Path(source))
    elif isinstance(source, Mapping):
        data = source
    else:
        raise BaselineError(
            f"pcr_baseline must be a mapping or a file path, not {type(source).__name__}"
        )
    if "pcr_values" in data:
        fmt = data.get("format", BASELINE_FORMAT)
        if fmt != BASELINE_FORMAT:
            raise BaselineError(f"unsupported baseline format {fmt!r}")
        data = data["pcr_values"]
    try:
        values = normalize_values(data)
    except ValueError as exc:
        raise BaselineError(f"invalid PCR baseline: {exc}") from None
    if not any(values.values()):
        raise BaselineError("invalid PCR baseline: it lists no PCR values")
    return values


def prepare_baseline(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a baseline now (a mapping or a JSON file) and return it in the plain
    ``{bank: {index: hex}}`` form that :func:`verify_attestation` accepts, so that a client can
    refuse a bad baseline when it is configured rather than after a request was sent."""
    return values_to_json(load_baseline(source))


def save_baseline(baseline: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a baseline as JSON (atomically: a reader never sees half a file)."""
    load_baseline(baseline)  # refuse to write something we could not read back
    target = Path(path)
    text = json.dumps(dict(baseline), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_baseline_file(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BASELINE_FILE_BYTES + 1)
    except OSError as exc:
        raise BaselineError(f"cannot read PCR baseline file {path}: {exc.strerror}") from None
    if len(raw) > _MAX_BASELINE_FILE_BYTES:
        raise BaselineError(f"PCR baseline file {path} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"PCR baseline file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise BaselineError(f"PCR baseline file {path} must hold a JSON object")
    return data
