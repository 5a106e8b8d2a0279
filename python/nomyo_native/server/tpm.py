"""TPM 2.0 quotes for responses (PROTOCOL.md section 5), and an owned swtpm for local use.

``TpmQuoter`` talks to any TPM through a TCTI string (``swtpm:host=...,port=...``,
``device:/dev/tpmrm0``...). Its AIK is a restricted signing primary key in the endorsement
hierarchy: fresh per quote (the published protocol), or persistent per TPM (the extension, see
:class:`TpmQuoter`). All TPM access goes through one lock: the ESAPI context is not thread-safe
and the TPM executes one command at a time anyway. Callers on an event loop must run
``quote`` in a worker thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from nomyo_native.server.exit_guard import GUARDS_SUPPORTED, Guard, start_guard
from nomyo_native.server.private_files import UnsafePathError, ensure_private_dir

PCR_BANK = "sha256"
PCR_INDEXES = (0, 7, 10)
PCR_SELECTION = f"{PCR_BANK}:" + ",".join(str(i) for i in PCR_INDEXES)
QUALIFYING_DATA_BYTES = 16

# (scheme, hash) -> tpm2-tools style template; the symmetric part must be null for a signer.
_TEMPLATES = {
    ("ecdsa", "sha256"): "ecc256:ecdsa-sha256:null",
    ("ecdsa", "sha384"): "ecc384:ecdsa-sha384:null",
    ("rsassa", "sha256"): "rsa2048:rsassa-sha256:null",
    ("rsassa", "sha384"): "rsa2048:rsassa-sha384:null",
    ("rsassa", "sha512"): "rsa2048:rsassa-sha512:null",
    ("rsapss", "sha256"): "rsa2048:rsapss-sha256:null",
    ("rsapss", "sha384"): "rsa2048:rsapss-sha384:null",
    ("rsapss", "sha512"): "rsa2048:rsapss-sha512:null",
}


def supported_quote_schemes() -> tuple[tuple[str, str], ...]:
    """The (scheme, hash) pairs :meth:`TpmQuoter.quote` accepts."""
    return tuple(sorted(_TEMPLATES))


class TpmError(Exception):
    """The TPM could not be started, reached or used."""


class SwtpmNotFoundError(TpmError):
    """The ``swtpm`` binary is not installed."""


def qualifying_data(payload_id: str) -> bytes:
    """``SHA-256(payload_id UTF-8)[:16]``: binds a quote to one request."""
    return hashlib.sha256(payload_id.encode("utf-8")).digest()[:QUALIFYING_DATA_BYTES]


def _tss() -> Any:
    try:
        import tpm2_pytss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TpmError(
            "TPM support needs tpm2-pytss: pip install 'nomyo-native[server,tpm]'"
        ) from exc
    return tpm2_pytss


def _consecutive_free_ports() -> int:
    """A port p with p and p+1 free on 127.0.0.1 (the swtpm TCTI uses p+1 for control)."""
    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise TpmError("no pair of consecutive free loopback ports for swtpm")


class SwtpmProcess:
    """An owned ``swtpm socket --tpm2`` on loopback ports.

    ``state_dir`` keeps the TPM's state (persistent keys, NV) across restarts: it is created
    0700 or must already be private, and it is never deleted. Without it the state lives in a
    temporary ``nomyo-swtpm-*`` directory that is removed when swtpm stops.

    swtpm runs under a small guard process (``exit_guard.py``) that stops it, and removes a
    temporary state directory, as soon as this process goes away by any path, SIGKILL
    included. Use as a context manager, or call :meth:`start` and :meth:`stop`. ``tcti`` is
    the string to give :class:`TpmQuoter`.
    """

    def __init__(
        self,
        binary: str = "swtpm",
        *,
        state_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.persistent = state_dir is not None
        self._requested_state_dir = Path(state_dir) if state_dir is not None else None
        self.state_dir: Path | None = None
        self.port: int | None = None
        # swtpm's guard: releasing it (or our death) stops swtpm.
        self._guard: Guard | None = None

    @property
    def running(self) -> bool:
        return self._guard is not None and self._guard.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The guard's process id (swtpm is its only child)."""
        return self._guard.pid if self._guard is not None else None

    @property
    def tcti(self) -> str:
        if self.port is None or not self.running:
            raise TpmError("swtpm is not running")
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> SwtpmProcess:
        if self.running:
            return self
        executable = shutil.which(self.binary)
        if executable is None:
            raise SwtpmNotFoundError(
                f"'{self.binary}' not found on PATH: install the Debian packages swtpm and "
                "swtpm-tools (apt-get install swtpm swtpm-tools), or run with --tpm none"
            )
        if not GUARDS_SUPPORTED:
            raise TpmError("an owned swtpm needs a POSIX system (use --tpm tcti:...)")
        if self._requested_state_dir is not None:
            try:
                self.state_dir = ensure_private_dir(self._requested_state_dir, "--tpm-state")
            except (OSError, UnsafePathError) as exc:
                raise TpmError(str(exc)) from None
        else:
            # mkdtemp makes it 0700.
            self.state_dir = Path(tempfile.mkdtemp(prefix="nomyo-swtpm-"))
        last_error = "unknown"
        try:
            # A port can be taken between probing and swtpm's bind: retry with fresh ports.
            for _ in range(5):
                port = _consecutive_free_ports()
                guard = self._spawn(executable, port)
                if self._wait_ready(guard.process, port + 1):
                    self._guard, self.port = guard, port
                    return self
                last_error = self._reap(guard)
        except BaseException:
            self._cleanup_dir()
            raise
        self._cleanup_dir()
        if self.persistent:
            last_error += " (is another endpoint using this --tpm-state directory?)"
        raise TpmError(f"swtpm did not start: {last_error}")

    def _spawn(self, executable: str, port: int) -> Guard:
        assert self.state_dir is not None
        swtpm = [
            executable,
            "socket",
            "--tpm2",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate",
            f"dir={self.state_dir},mode=0600",
            "--flags",
            "not-need-init,startup-clear",
        ]
        # The guard deletes only the temporary default, never a kept --tpm-state.
        return start_guard(remove=() if self.persistent else (self.state_dir,), command=swtpm)

    def _wait_ready(self, process: subprocess.Popen[bytes], ctrl_port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", ctrl_port), timeout=1.0).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    @staticmethod
    def _reap(guard: Guard) -> str:
        """Stop a guard whose swtpm did not come up; swtpm's last error line."""
        guard.release()
        process = guard.process
        try:
            _, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
        text = err.decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit status {process.returncode}"

    def stop(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()
        self.port = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        # Only the temporary default: state the user asked to keep is never deleted.
        if self.state_dir is not None and not self.persistent:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir = None

    def __enter__(self) -> SwtpmProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


AIK_MODES = ("persistent", "per-request")
# PolicySecret(TPM_RH_ENDORSEMENT): the authPolicy of the TCG default EK templates.
_EK_CERT_NV_INDEX = 0x01C00002  # TCG: the RSA 2048 EK certificate
_NV_CHUNK = 512
_EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
# The extension's qualifying data (README, "Attestation extension"): the payload id and the
# fingerprint of the server key the client encrypted to, so that a quote relayed from another
# server (bound to that server's key) fails at the client.
KEY_BINDING_LABEL = b"nomyo-native/quote-binding/v1\x00"


def key_bound_qualifying_data(payload_id: str, server_key_fingerprint: str) -> bytes:
    """``SHA-256(label || payload_id || 0x00 || server_key_fingerprint)[:16]``."""
    material = (
        KEY_BINDING_LABEL
        + payload_id.encode("utf-8")
        + b"\x00"
        + server_key_fingerprint.encode("ascii")
    )
    return hashlib.sha256(material).digest()[:QUALIFYING_DATA_BYTES]


class TpmQuoter:
    """Quotes PCRs sha256:0,7,10, bound to a payload id, with the AIK mode chosen at start.

    ``aik="per-request"`` (the published protocol): a fresh AIK per quote, whose template
    carries random ``unique`` bytes; the quote binds the payload id only. ``aik="persistent"``
    (the extension): one restricted signing primary key per scheme in the endorsement
    hierarchy, derived from a fixed template, so the same TPM (same endorsement seed, e.g. an
    swtpm with ``--tpm-state``) yields the same key at every start; it stays loaded for the
    quoter's life, and its quotes also bind the server key (:func:`key_bound_qualifying_data`).
    """

    def __init__(self, tcti: str, *, aik: str = "per-request") -> None:
        if aik not in AIK_MODES:
            raise ValueError(f"aik must be one of {AIK_MODES}, not {aik!r}")
        tss = _tss()
        name, _, conf = tcti.partition(":")
        if not name:
            raise TpmError("TCTI must look like 'swtpm:host=127.0.0.1,port=2321'")
        self.tcti = tcti
        self.aik_mode = aik
        self._lock = threading.Lock()
        # (scheme, hash) -> (ESYS handle, marshalled TPM2B_PUBLIC) of the persistent AIKs.
        self._aiks: dict[tuple[str, str], tuple[Any, bytes]] = {}
        try:
            self._tcti = tss.TCTILdr(name, conf or None)
            self._esapi = tss.ESAPI(self._tcti)
        except Exception as exc:
            raise TpmError(f"cannot open TPM via TCTI {tcti!r}: {exc}") from None
        self._closed = False

    @property
    def persistent(self) -> bool:
        return self.aik_mode == "persistent"

    def _aik_template(self, scheme: str, hash_alg: str, *, fresh: bool) -> Any:
        template = _TEMPLATES.get((scheme, hash_alg))
        if template is None:
            raise ValueError(
                f"unsupported quote scheme {scheme!r}/{hash_alg!r}; supported: {sorted(_TEMPLATES)}"
            )
        tss = _tss()
        types, constants = tss.types, tss.constants
        attrs = constants.TPMA_OBJECT
        public = types.TPMT_PUBLIC.parse(
            template,
            objectAttributes=attrs.RESTRICTED
            | attrs.SIGN_ENCRYPT
            | attrs.FIXEDTPM
            | attrs.FIXEDPARENT
            | attrs.SENSITIVEDATAORIGIN
            | attrs.USERWITHAUTH,
        )
        if fresh:
            # Random unique bytes make the primary derivation, and so the AIK, new every time.
            if public.type == constants.TPM2_ALG.ECC:
                public.unique.ecc.x = secrets.token_bytes(32)
            else:
                public.unique.rsa = secrets.token_bytes(32)
        return types.TPM2B_PUBLIC(publicArea=public)

    def _persistent_aik(self, scheme: str, hash_alg: str) -> tuple[Any, bytes]:
        """The loaded persistent AIK for a scheme (created on first use); call under the lock."""
        key = (scheme, hash_alg)
        if key not in self._aiks:
            tss = _tss()
            template = self._aik_template(scheme, hash_alg, fresh=False)
            handle, public, _, _, _ = self._esapi.create_primary(
                None, template, tss.constants.ESYS_TR.ENDORSEMENT
            )
            self._aiks[key] = (handle, public.marshal())
        return self._aiks[key]

    def aik_public(self, *, scheme: str = "ecdsa", hash_alg: str = "sha256") -> bytes:
        """The marshalled TPM2B_PUBLIC of the persistent AIK for a scheme."""
        if not self.persistent:
            raise TpmError("this quoter makes a fresh AIK per request: there is no AIK to pin")
        self._aik_template(scheme, hash_alg, fresh=False)  # validates the scheme
        tss = _tss()
        with self._lock:
            self._check_open()
            try:
                return self._persistent_aik(scheme, hash_alg)[1]
            except tss.TSS2_Exception as exc:
                raise TpmError(f"TPM could not create the attestation key: {exc}") from None

    def aik_fingerprint(self, *, scheme: str = "ecdsa", hash_alg: str = "sha256") -> str:
        """``sha256:<hex>`` of the persistent AIK's TPMT_PUBLIC: the client's ``trusted_aik``."""
        public = self.aik_public(scheme=scheme, hash_alg=hash_alg)
        return "sha256:" + hashlib.sha256(public[2:]).hexdigest()

    def quote(
        self,
        payload_id: str,
        *,
        scheme: str = "ecdsa",
        hash_alg: str = "sha256",
        server_key_fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """The ``tpm_attestation`` block of PROTOCOL.md section 5 for ``payload_id``.

        A persistent AIK quotes only with the extension's binding, so it needs the fingerprint
        of the server key the request was encrypted to (a quote by it never carries the
        published binding, which a relay could reuse).
        """
        if not isinstance(payload_id, str):
            raise TypeError("payload_id must be a str")
        if self.persistent and server_key_fingerprint is None:
            raise ValueError(
                "a persistent AIK quotes with the server key binding: pass its fingerprint"
            )
        if not self.persistent and server_key_fingerprint is not None:
            raise ValueError("a per-request AIK quotes with the published binding only")
        template = self._aik_template(scheme, hash_alg, fresh=not self.persistent)
        extra = (
            key_bound_qualifying_data(payload_id, server_key_fingerprint)
            if server_key_fingerprint is not None
            else qualifying_data(payload_id)
        )
        tss = _tss()
        with self._lock:
            self._check_open()
            try:
                if self.persistent:
                    handle, aik_public = self._persistent_aik(scheme, hash_alg)
                else:
                    handle, public, _, _, _ = self._esapi.create_primary(
                        None, template, tss.constants.ESYS_TR.ENDORSEMENT
                    )
                    aik_public = public.marshal()
                try:
                    attest, signature = self._esapi.quote(handle, PCR_SELECTION, extra)
                    # Read under the same lock, so nothing of ours extends in between.
                    _, _, digests = self._esapi.pcr_read(PCR_SELECTION)
                finally:
                    if not self.persistent:
                        self._esapi.flush_context(handle)
            except tss.TSS2_Exception as exc:
                raise TpmError(f"TPM quote failed: {exc}") from None
        values = [bytes(d).hex() for d in digests]
        if len(values) != len(PCR_INDEXES):
            raise TpmError("TPM returned an incomplete PCR read")
        block = {
            "is_available": True,
            "pcr_banks": PCR_SELECTION,
            "pcr_values": {PCR_BANK: {str(i): v for i, v in zip(PCR_INDEXES, values, strict=True)}},
            "aik_pubkey_b64": base64.b64encode(aik_public).decode("ascii"),
            "quote_b64": base64.b64encode(attest.marshal()).decode("ascii"),
            "signature_b64": base64.b64encode(signature.marshal()).decode("ascii"),
        }
        if server_key_fingerprint is not None:
            # Informational (the client recomputes the binding, it never trusts this field).
            block["binding"] = "payload_id+server_key"
        return block

    # -- enrollment (the extension): the endorsement key and credential activation --

    @staticmethod
    def _ek_template() -> Any:
        """The TCG default RSA 2048 EK template (EK Credential Profile, template L-1): the key an
        EK certificate certifies; its policy is PolicySecret(TPM_RH_ENDORSEMENT)."""
        tss = _tss()
        types, constants = tss.types, tss.constants
        attrs = constants.TPMA_OBJECT
        public = types.TPMT_PUBLIC.parse(
            "rsa2048:aes128cfb",
            nameAlg="sha256",
            objectAttributes=attrs.FIXEDTPM
            | attrs.FIXEDPARENT
            | attrs.SENSITIVEDATAORIGIN
            | attrs.ADMINWITHPOLICY
            | attrs.RESTRICTED
            | attrs.DECRYPT,
        )
        public.authPolicy = types.TPM2B_DIGEST(_EK_POLICY)
        public.unique.rsa = bytes(256)
        return types.TPM2B_PUBLIC(publicArea=public)

    def ek_public(self) -> bytes:
        """The marshalled TPM2B_PUBLIC of the TPM's RSA endorsement key."""
        tss = _tss()
        with self._lock:
            self._check_open()
            try:
                handle, public, _, _, _ = self._esapi.create_primary(
                    None, self._ek_template(), tss.constants.ESYS_TR.ENDORSEMENT
                )
                self._esapi.flush_context(handle)
            except tss.TSS2_Exception as exc:
                raise TpmError(f"TPM could not create the endorsement key: {exc}") from None
        marshalled: bytes = public.marshal()  # tpm2-pytss is untyped
        return marshalled

    def ek_certificate(self) -> bytes | None:
        """The DER RSA EK certificate in the TPM's NV index 0x01C00002 (TCG), or None when the
        TPM has none (an swtpm made without ``swtpm_setup --create-ek-cert``)."""
        tss = _tss()
        with self._lock:
            self._check_open()
            try:
                index = self._esapi.tr_from_tpmpublic(_EK_CERT_NV_INDEX)
            except tss.TSS2_Exception:
                return None
            try:
                public, _ = self._esapi.nv_read_public(index)
                size = int(public.nvPublic.dataSize)
                data = b""
                while len(data) < size:
                    chunk = self._esapi.nv_read(
                        index, min(_NV_CHUNK, size - len(data)), len(data), auth_handle=index
                    )
                    data += bytes(chunk)
            except tss.TSS2_Exception as exc:
                raise TpmError(f"cannot read the EK certificate: {exc}") from None
            finally:
                with contextlib.suppress(Exception):
                    self._esapi.tr_close(index)
        return data

    def activate_credential(
        self,
        id_object: bytes,
        encrypted_secret: bytes,
        *,
        scheme: str = "ecdsa",
        hash_alg: str = "sha256",
    ) -> bytes:
        """TPM2_ActivateCredential for the persistent AIK of a scheme under the EK: the
        credential a verifier sealed with MakeCredential, or TpmError when it was not sealed
        for this TPM's EK and this AIK's name."""
        if not self.persistent:
            raise TpmError("credential activation needs the persistent attestation key")
        tss = _tss()
        types, constants = tss.types, tss.constants
        try:
            blob, used = types.TPM2B_ID_OBJECT.unmarshal(id_object)
            secret, used_secret = types.TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        except Exception:
            raise ValueError("not a TPM2B_ID_OBJECT and a TPM2B_ENCRYPTED_SECRET") from None
        if used != len(id_object) or used_secret != len(encrypted_secret):
            raise ValueError("trailing bytes after the credential structures")
        with self._lock:
            self._check_open()
            ek = session = None
            try:
                aik, _ = self._persistent_aik(scheme, hash_alg)
                ek, _, _, _, _ = self._esapi.create_primary(
                    None, self._ek_template(), constants.ESYS_TR.ENDORSEMENT
                )
                session = self._esapi.start_auth_session(
                    constants.ESYS_TR.NONE,
                    constants.ESYS_TR.NONE,
                    constants.TPM2_SE.POLICY,
                    types.TPMT_SYM_DEF(algorithm=constants.TPM2_ALG.NULL),
                    constants.TPM2_ALG.SHA256,
                )
                self._esapi.policy_secret(constants.ESYS_TR.ENDORSEMENT, session)
                credential = self._esapi.activate_credential(
                    aik, ek, blob, secret, session1=constants.ESYS_TR.PASSWORD, session2=session
                )
            except tss.TSS2_Exception as exc:
                raise TpmError(f"credential activation failed: {exc}") from None
            finally:
                for handle in (session, ek):
                    if handle is not None:
                        with contextlib.suppress(Exception):
                            self._esapi.flush_context(handle)
        return bytes(credential)

    def pcr_extend(self, index: int, data: bytes) -> None:
        """Extend sha256 PCR ``index`` with SHA-256(``data``) (tests use it to change a PCR)."""
        if not 0 <= index <= 23:
            raise ValueError("PCR index must be 0..23")
        tss = _tss()
        types, constants = tss.types, tss.constants
        digest = types.TPMT_HA(
            hashAlg=constants.TPM2_ALG.SHA256,
            digest=types.TPMU_HA(sha256=hashlib.sha256(data).digest()),
        )
        with self._lock:
            self._check_open()
            try:
                self._esapi.pcr_extend(
                    constants.ESYS_TR.parse(f"PCR{index}"), types.TPML_DIGEST_VALUES([digest])
                )
            except tss.TSS2_Exception as exc:
                raise TpmError(f"PCR extend failed: {exc}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise TpmError("TPM connection is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for handle, _ in self._aiks.values():
                with contextlib.suppress(Exception):  # the TPM may already be gone
                    self._esapi.flush_context(handle)
            self._aiks.clear()
            self._esapi.close()
            self._tcti.close()

    def __enter__(self) -> TpmQuoter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
