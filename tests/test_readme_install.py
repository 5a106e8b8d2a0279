"""Issue 13 item 10: the README's install section stays true to what the package declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _install_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Install\n(.*?)^## ", readme, re.DOTALL | re.MULTILINE)
    assert match, "README has no '## Install' section"
    return match.group(1)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_install_section_explains_every_extra() -> None:
    section = _install_section()
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in extras:
        assert f"[{extra}]" in section, f"extra [{extra}] is not explained in README's Install"


def test_install_section_states_the_python_floor_the_package_declares() -> None:
    floor = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert f"CPython {floor} or newer" in _install_section()


def test_install_section_base_install_needs_no_crypto_or_tss_package() -> None:
    # The section promises that verification needs neither pyca nor tpm2-pytss on a base install.
    deps = " ".join(_pyproject()["project"]["dependencies"]).lower()
    assert "cryptography" not in deps and "tpm2-pytss" not in deps
    assert "no pyca/cryptography and no\n  tpm2-pytss" in _install_section()


def test_install_section_names_each_wheel_platform_and_the_glibc_floor() -> None:
    section = _install_section()
    for phrase in ("manylinux2014", "glibc 2.17", "musllinux_1_2", "Windows x64", "macOS"):
        assert phrase in section
