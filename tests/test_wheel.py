"""The manylinux2014 x86_64 abi3 wheel users get: inspected, installed into a fresh venv, used.

`make test` builds it first (`make wheel`: scripts/build_wheels.sh, zig-linked against glibc
2.17); run alone, this test builds it the same way. The fresh venv gets the wheel and its
declared dependencies, as `pip install` gives a user (from pip's cache or PyPI), and nothing of
the repository: the check runs in isolated mode from a temporary directory and asserts that the
package and its native module are the installed files. The native module is not standalone: it
raises the package's own exception classes (``nomyo_native.errors``), so it is imported through
the package, as users import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

# Builds the manylinux wheel with scripts/build_wheels.sh (bash, zig): Linux only.
pytestmark = pytest.mark.linux_only

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO / ".cache/wheelhouse/manylinux2014-x86_64"

CHECK_INSTALLED = textwrap.dedent(
    """
    import importlib.util, json, os, sys, tempfile
    from pathlib import Path

    spec = importlib.util.find_spec("nomyo_native")
    package = Path(spec.origin).parent
    assert "site-packages" in str(package), package
    (so_file,) = [p for p in package.iterdir() if p.name.startswith("_core.") and p.suffix == ".so"]
    import nomyo_native._core as core

    assert Path(core.__file__) == so_file, core.__file__
    import nomyo_native

    assert nomyo_native.__version__ == core.__version__

    # The test probes (issue 10 finding 12) exist only in the test build.
    leaked = [n for n in dir(core) if "probe" in n.lower() or "testing" in n]
    assert leaked == [] and "nomyo_native._core._testing" not in sys.modules, leaked
    assert b"probe_overflow" not in so_file.read_bytes()

    kp = core.ClientKeyPair.generate(2048)
    server = core.ServerPublicKey.from_pem(kp.public_key_pem)
    payload = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    payload_out, processed_at, algorithm = core.open_envelope(core.seal(payload, server), kp)
    assert payload_out == payload and processed_at is None, payload_out
    with tempfile.TemporaryDirectory() as d:
        kp.save(os.path.join(d, "k.pem"), os.path.join(d, "p.pem"), password="wheel-password")
        again = core.ClientKeyPair.load(os.path.join(d, "k.pem"), "wheel-password")
        assert again.fingerprint == kp.fingerprint
    try:
        core.open_envelope(b"{}", kp)
    except core.EnvelopeError:
        pass
    else:
        raise AssertionError("an empty envelope must be refused")
    print(json.dumps({"so": so_file.name, "version": core.__version__, "alg": algorithm}))
    """
)


def _manylinux_wheel() -> Path:
    """The wheel `make wheel` built, or a fresh build when there is none."""
    wheels = sorted(WHEELHOUSE.glob("*.whl"))
    if not wheels:
        env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}
        build = subprocess.run(
            [str(REPO / "scripts/build_wheels.sh"), "manylinux2014-x86_64"],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        assert build.returncode == 0, build.stderr[-4000:]
        wheels = sorted(WHEELHOUSE.glob("*.whl"))
    (wheel,) = wheels
    return wheel


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_installs_and_works_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = _manylinux_wheel()
    assert "-cp311-abi3-manylinux2014_x86_64" in wheel.name, wheel.name

    # The same inspection `make wheels` and the release workflow run over every wheel.
    inspection = subprocess.run(
        [sys.executable, str(REPO / "scripts/inspect_wheel.py"), str(wheel)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert inspection.returncode == 0, inspection.stdout
    assert "1 passed, 0 failed" in inspection.stdout

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(metadata_name).decode()
    assert "nomyo_native/_core.abi3.so" in names
    assert "nomyo_native/_core.pyi" in names
    assert "Requires-Python: >=3.11" in metadata
    assert "Requires-Dist: httpx2" in metadata

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    clean_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=clean_env,
    )
    # -I: isolated mode, so neither the repo nor the dev venv can leak onto sys.path.
    result = subprocess.run(
        [str(python), "-I", "-c", CHECK_INSTALLED],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert '"alg": "hybrid-aes256-rsa4096"' in result.stdout
    wheel_version = wheel.name.split("-")[1]
    assert f'"version": "{wheel_version}"' in result.stdout
