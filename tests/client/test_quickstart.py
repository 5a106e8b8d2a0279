"""Issue 13 item 1: the README's quick start runs verbatim on a base install.

The wheel users get is installed into a fresh venv with its dependencies and no extras (no
tpm2-pytss, no cryptography); the README's quick-start block is run there with one
substitution, the URL, against the local endpoint with a private swtpm (started from the test
environment). The endpoint's throwaway CA is trusted the way a user trusts a private CA without
editing code: ``SSL_CERT_FILE``. Tier ``maximum`` with its quote verification, the pin file in
the home directory, the echo of the reply: all as a user would see them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from pathlib import Path

import pytest
from tests.test_wheel import _manylinux_wheel

pytestmark = [pytest.mark.linux_only, pytest.mark.swtpm]

REPO = Path(__file__).resolve().parents[2]
README_URL = '"https://api.nomyo.ai"'


def quick_start_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quick start\n+```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README has no python block under '## Quick start'"
    return match.group(1)


def _base_install(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "NOMYO_", "SSL_CERT_"))
    }
    env.update(HOME=str(home), PIP_DISABLE_PIP_VERSION_CHECK="1")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(_manylinux_wheel())],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python, env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_quick_start_runs_verbatim_on_a_base_install(tmp_path, swtpm_endpoint):
    python, env = _base_install(tmp_path)
    extras = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('tpm2_pytss', 'cryptography', 'starlette') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert extras.stdout.strip() == "[]", "a base install has none of the extras"

    code = quick_start_block()
    assert code.count(README_URL) == 1
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace(README_URL, repr(swtpm_endpoint.base_url)), encoding="utf-8")
    env["SSL_CERT_FILE"] = str(swtpm_endpoint.ca_path)

    for run in ("first use: the key is pinned", "second use: the pin holds"):
        result = subprocess.run(
            [str(python), "-I", str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{run}: {result.stderr[-3000:]}"
        # The echo backend answers with the user's message.
        assert result.stdout.strip() == "Summarise patient record #1234", run
    pins = json.loads((Path(env["HOME"]) / ".nomyo" / "pins.json").read_text())
    assert pins == {swtpm_endpoint.base_url: swtpm_endpoint.server_key_fingerprint}
