"""Real TPM quotes for the attestation tests: one swtpm for the whole session.

The quote producer mirrors ``nomyo_native.server.tpm.TpmQuoter`` (same ``quote`` and
``pcr_extend`` signatures, same PROTOCOL.md section 5 block) so the tests read the same either
way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

tss = pytest.importorskip("tpm2_pytss")

from tpm2_pytss import ESAPI, TCTILdr  # noqa: E402
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_OBJECT  # noqa: E402
from tpm2_pytss.types import (  # noqa: E402
    TPM2B_DATA,
    TPM2B_EVENT,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_PCR_SELECTION,
    TPMT_SIG_SCHEME,
)

PCR_BANKS = "sha256:0,7,10"
AIK_ATTRIBUTES = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)
# tpm2-tools style templates; 2048-bit RSA keeps keygen cheap (key size is not the point here).
TEMPLATES = {
    ("ecdsa", "sha256"): "ecc256:ecdsa-sha256:null",
    ("ecdsa", "sha384"): "ecc384:ecdsa-sha384:null",
    ("rsassa", "sha256"): "rsa2048:rsassa-sha256:null",
    ("rsapss", "sha256"): "rsa2048:rsapss-sha256:null",
    ("rsassa", "sha512"): "rsa2048:rsassa-sha512:null",
}


class SwtpmProcess:
    """``swtpm socket --tpm2`` on a private Unix socket, state in a temporary directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "tpm.sock"
        state = workdir / "state"
        state.mkdir()
        binary = shutil.which("swtpm")
        if binary is None:
            pytest.skip("swtpm is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "socket",
                "--tpm2",
                "--server",
                f"type=unixio,path={self.socket}",
                "--ctrl",
                f"type=unixio,path={self.socket}.ctrl",  # where the swtpm TCTI looks for it
                "--tpmstate",
                f"dir={state}",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not (self.socket.exists() and Path(f"{self.socket}.ctrl").exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("swtpm did not start")
            time.sleep(0.02)

    @property
    def tcti(self) -> str:
        return f"swtpm:path={self.socket}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class TpmQuoter:
    """Makes PROTOCOL.md section 5 blocks with a fresh AIK per quote."""

    def __init__(self, tcti: str) -> None:
        name, _, conf = tcti.partition(":")
        self.esapi = ESAPI(TCTILdr(name, conf))

    def close(self) -> None:
        self.esapi.close()

    def quote(
        self, payload_id: str, *, scheme: str = "ecdsa", hash_alg: str = "sha256"
    ) -> dict[str, Any]:
        template = TPM2B_PUBLIC.parse(
            TEMPLATES[(scheme, hash_alg)], objectAttributes=AIK_ATTRIBUTES
        )
        # A random `unique` makes each primary a different (ephemeral) key.
        if template.publicArea.type == TPM2_ALG.ECC:
            template.publicArea.unique.ecc.x = os.urandom(32)
        else:
            template.publicArea.unique.rsa = os.urandom(32)
        handle, aik, *_ = self.esapi.create_primary(
            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
        )
        try:
            selection = TPML_PCR_SELECTION.parse(PCR_BANKS)
            nonce = hashlib.sha256(payload_id.encode()).digest()[:16]
            quoted, signature = self.esapi.quote(
                handle, selection, TPM2B_DATA(nonce), TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
            )
            _, read_selection, digests = self.esapi.pcr_read(selection)
        finally:
            self.esapi.flush_context(handle)
        assert read_selection.marshal() == selection.marshal()
        indices = [int(i) for i in PCR_BANKS.split(":")[1].split(",")]
        return {
            "is_available": True,
            "pcr_banks": PCR_BANKS,
            "pcr_values": {
                "sha256": {str(i): bytes(digests[n]).hex() for n, i in enumerate(indices)}
            },
            "aik_pubkey_b64": base64.b64encode(aik.marshal()).decode(),
            "quote_b64": base64.b64encode(quoted.marshal()).decode(),
            "signature_b64": base64.b64encode(signature.marshal()).decode(),
        }

    def pcr_extend(self, index: int, data: bytes) -> None:
        self.esapi.pcr_event(getattr(ESYS_TR, f"PCR{index}"), TPM2B_EVENT(data))


@pytest.fixture(scope="session")
def tpm_quoter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpmQuoter]:
    swtpm = SwtpmProcess(tmp_path_factory.mktemp("swtpm"))
    try:
        quoter = TpmQuoter(swtpm.tcti)
        try:
            yield quoter
        finally:
            quoter.close()
    finally:
        swtpm.stop()
