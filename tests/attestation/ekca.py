"""Test EK certificate authorities: each swtpm gets its EK certificate from a test CA.

``swtpm_setup --create-ek-cert`` calls ``swtpm_localca``, whose configuration and state are
system-wide by default; here every CA lives in its own temporary folder (its root, its
intermediate signing key, its serial), and every TPM state is provisioned from one of them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class EkCa:
    directory: Path
    setup_conf: Path

    @property
    def root(self) -> Path:
        return self.directory / "state" / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate(self) -> Path:
        return self.directory / "state" / "issuercert.pem"


def make_ca(directory: Path) -> EkCa:
    """A CA configuration in ``directory``; swtpm_localca creates its keys on first use."""
    if shutil.which("swtpm_setup") is None or shutil.which("swtpm_localca") is None:
        pytest.skip("swtpm_setup/swtpm_localca are not installed (Debian package swtpm-tools)")
    state = directory / "state"
    state.mkdir(parents=True)
    localca_conf = directory / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {state}\n"
        f"signingkey = {state}/signkey.pem\n"
        f"issuercert = {state}/issuercert.pem\n"
        f"certserial = {state}/certserial\n"
    )
    options = directory / "swtpm-localca.options"
    options.write_text(
        "--platform-manufacturer nomyo-test\n--platform-version 2.1\n--platform-model swtpm\n"
    )
    setup_conf = directory / "swtpm_setup.conf"
    setup_conf.write_text(
        f"create_certs_tool = {shutil.which('swtpm_localca')}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {options}\n"
        "active_pcr_banks = sha256\n"
    )
    return EkCa(directory, setup_conf)


def provision(ca: EkCa, state_dir: Path) -> Path:
    """A TPM state in ``state_dir`` whose EK certificate ``ca`` issued."""
    state_dir.mkdir(mode=0o700, parents=True)
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(state_dir), "--create-ek-cert",
         "--config", str(ca.setup_conf), "--overwrite"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    state_dir.chmod(0o700)
    return state_dir
