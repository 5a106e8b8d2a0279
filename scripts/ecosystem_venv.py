"""Create one ecosystem venv: the openai SDK (and libraries on it) with our package, for tests.

usage: python3 scripts/ecosystem_venv.py NAME

``.cache/ecosystem/NAME`` gets: our runtime dependencies, the endpoint's extra (the tests start
a local endpoint in-process), pytest, and the pins of ``tests/ecosystem/pins/NAME.txt``. Our
package itself is the source tree (``python/``, with the native module ``make build`` put
there), reached through a ``.pth`` file: nothing is compiled again per venv.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# From the test extra: what running tests/ecosystem needs (not the linters or wheel tools).
TEST_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "cryptography")


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["server"]]
    for requirement in extras["test"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        if name in TEST_TOOLS:
            wanted.append(requirement)
    return wanted


def main(name: str) -> None:
    pins = ROOT / "tests" / "ecosystem" / "pins" / f"{name}.txt"
    if not pins.is_file():
        raise SystemExit(f"no pin set {pins}")
    target = ROOT / ".cache" / "ecosystem" / name
    venv.create(target, clear=True, with_pip=True)
    python = target / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements(), "-r", str(pins)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "nomyo_native.pth").write_text(f"{ROOT / 'python'}\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
