"""The reference client nomyo==0.2.9 lives in .cache/reference-venv only (its idna==3.14 pin
conflicts with httpx2's idna>=3.18), and the tests that drive it cannot silently skip: a missing
reference venv fails them, and no test imports nomyo in this process."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
from tests.reference import REFERENCE_PYTHON, reference_python, run_reference

TESTS = Path(__file__).parent


def test_this_venv_has_no_reference_client():
    assert importlib.util.find_spec("nomyo") is None
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("nomyo")
    # Ours runs on httpx2 and the idna it needs, whatever the reference pins.
    idna = tuple(int(part) for part in importlib.metadata.version("idna").split(".")[:2])
    assert idna >= (3, 18)


@pytest.mark.reference
def test_the_reference_venv_has_nomyo_0_2_9_on_its_own_pins():
    probe = (
        "import importlib.metadata as m, importlib.util as u, json; "
        "print(json.dumps({'nomyo': m.version('nomyo'), 'idna': m.version('idna'), "
        "'ours': u.find_spec('nomyo_native') is not None}))"
    )
    done = subprocess.run(
        [str(reference_python()), "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == '{"nomyo": "0.2.9", "idna": "3.14", "ours": false}'
    assert run_reference("memory-info")["keys"], "the driver answers from the reference venv"


def test_a_missing_reference_venv_fails_the_test_instead_of_skipping(tmp_path):
    missing = tmp_path / "no-venv" / "bin" / "python"
    with pytest.raises(pytest.fail.Exception, match="make reference-venv") as failed:
        reference_python(missing)
    assert not isinstance(failed.value, pytest.skip.Exception)
    assert REFERENCE_PYTHON.parts[-4:] == (".cache", "reference-venv", "bin", "python")


def test_no_test_imports_the_reference_in_process():
    """Every use goes through tests/reference (a subprocess of the reference venv): an
    in-process import would fail here, or be skipped by an importorskip."""
    in_process = re.compile(
        r"^\s*(import nomyo\b(?!_native)|from nomyo\b(?!_native)\S* import"
        r"|.*importorskip\(\s*['\"]nomyo['\"])",
        re.MULTILINE,
    )
    offenders = []
    for path in TESTS.rglob("*.py"):
        # The scripts the reference venv runs are the one place nomyo is imported.
        if path.parent.name == "reference" or path.name == "child.py":
            continue
        if in_process.search(path.read_text()):
            offenders.append(str(path.relative_to(TESTS)))
    assert offenders == []
