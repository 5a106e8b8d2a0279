"""Create the ecosystem venvs: the openai SDK (and libraries on it) with our package, for tests.

usage: python3 scripts/ecosystem_venv.py NAME...

Two at a time (pip waits on the network as much as on a core). ``.cache/ecosystem/NAME`` gets
our runtime dependencies, the endpoint's extra (the tests start a local endpoint in-process),
pytest, and the pins of ``tests/ecosystem/pins/NAME.txt``. Our package itself is the source tree
(``python/``, with the native module ``make build`` put there), reached through a ``.pth``
file: nothing is compiled again per venv.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
from concurrent.futures import ThreadPoolExecutor
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


def create(name: str) -> None:
    pins = ROOT / "tests" / "ecosystem" / "pins" / f"{name}.txt"
    if not pins.is_file():
        raise SystemExit(f"no pin set {pins}")
    target = ROOT / ".cache" / "ecosystem" / name
    venv.create(target, clear=True, with_pip=True)
    python = target / "bin" / "python"
    # No .pyc compiling at install: only what the tests import gets compiled, on first import.
    pip = [str(python), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"]
    log = target.with_suffix(".log")
    with log.open("w") as out:
        done = subprocess.run(
            [*pip, *requirements(), "-r", str(pins)], stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise SystemExit(f"{name}: pip failed:\n{log.read_text()[-4000:]}")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "nomyo_native.pth").write_text(f"{ROOT / 'python'}\n")


def main(names: list[str]) -> None:
    if not names:
        raise SystemExit(__doc__)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in pool.map(create, names):
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
