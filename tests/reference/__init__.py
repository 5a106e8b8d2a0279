"""Driving the reference client nomyo==0.2.9, which lives in a venv of its own.

``make reference-venv`` (a prerequisite of ``make test``) creates ``.cache/reference-venv``; its
interpreter runs ``driver.py`` (the reference's side of a test) in a subprocess and answers in
JSON. A missing reference venv fails the test that needs it, loudly: it is never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE_PYTHON = REPO / ".cache" / "reference-venv" / "bin" / "python"
DRIVER = Path(__file__).with_name("driver.py")
USER_SCRIPT = Path(__file__).with_name("user_script.py")


def reference_python(python: Path = REFERENCE_PYTHON) -> Path:
    """The reference venv's interpreter; a test failure (not a skip) when it is missing."""
    if not python.exists():
        pytest.fail(
            f"the reference client's venv is missing ({python}): run `make reference-venv`",
            pytrace=False,
        )
    return python


def subprocess_env() -> dict[str, str]:
    """This process's environment (SSL_CERT_FILE included) without a PYTHONPATH that could
    put this venv's packages in front of the other interpreter's."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run_json(argv: list[str], job: Any = None, timeout: float = 180) -> Any:
    done = subprocess.run(
        argv,
        input="" if job is None else json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_reference(command: str, job: Any = None, timeout: float = 180) -> Any:
    """``driver.py COMMAND`` under the reference venv, ``job`` as its JSON input."""
    return run_json([str(reference_python()), str(DRIVER), command], job, timeout)


def raised(outcome: dict[str, Any], *classes: str) -> dict[str, Any]:
    """The error of a driver ``outcome`` that raised one of ``classes`` (by name, subclasses
    included, as ``pytest.raises`` would accept); fails if it returned or raised another."""
    assert "error" in outcome, f"expected one of {classes}, got a response: {outcome}"
    error = outcome["error"]
    assert set(classes) & set(error["mro"]), f"expected one of {classes}, got {error}"
    return error


def reference_chat(base_url: str, calls: list[tuple[str, dict[str, Any]]], **options: Any) -> Any:
    """``calls`` (method name, keywords) in order on one reference SecureChatCompletion."""
    job = {
        "base_url": base_url,
        "options": options,
        "calls": [{"method": method, "kwargs": kwargs} for method, kwargs in calls],
    }
    return run_reference("chat", job)
