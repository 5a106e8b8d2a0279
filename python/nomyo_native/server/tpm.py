"""TPM 2.0 quotes for responses (PROTOCOL.md section 5).

``TpmQuoter`` talks to any TPM through a TCTI string (``swtpm:host=...,port=...``,
``device:/dev/tpmrm0``...). Its AIK is a restricted signing primary key in the endorsement
hierarchy: fresh per quote (the published protocol), or persistent per TPM (the extension, see
:class:`TpmQuoter`). All TPM access goes through one lock: the ESAPI context is not thread-safe
and the TPM executes one command at a time anyway. Callers on an event loop must run
``quote`` in a worker thread.

Beside it: ``swtpm`` (an owned software TPM for local use; ``SwtpmProcess`` is importable from
here too), ``tpm_endorsement`` (the EK and credential activation) and ``tss`` (loading
tpm2-pytss, ``TpmError``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import threading
from types import TracebackType
from typing import Any

from nomyo_native.server import tpm_endorsement
from nomyo_native.server.swtpm import SwtpmNotFoundError, SwtpmProcess
from nomyo_native.server.tss import TpmError, load_tss

__all__ = [
    "AIK_MODES",
    "PCR_SELECTION",
    "SwtpmNotFoundError",
    "SwtpmProcess",
    "TpmError",
    "TpmQuoter",
    "key_bound_qualifying_data",
    "qualifying_data",
    "supported_quote_schemes",
]

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


def qualifying_data(payload_id: str) -> bytes:
    """``SHA-256(payload_id UTF-8)[:16]``: binds a quote to one request."""
    return hashlib.sha256(payload_id.encode("utf-8")).digest()[:QUALIFYING_DATA_BYTES]


AIK_MODES = ("persistent", "per-request")
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
        tss = load_tss()
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
        tss = load_tss()
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
            tss = load_tss()
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
        tss = load_tss()
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
        aik_public, attest, signature, digests = self._quote_and_read(
            template, scheme, hash_alg, extra
        )
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

    def _quote_and_read(
        self, template: Any, scheme: str, hash_alg: str, extra: bytes
    ) -> tuple[bytes, Any, Any, Any]:
        """The AIK's public area, the quote, its signature and the quoted PCRs' values, read
        under one hold of the lock."""
        tss = load_tss()
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
        return aik_public, attest, signature, digests

    # -- enrollment (the extension): the endorsement key and credential activation --

    # -- enrollment (the extension): the endorsement key and credential activation --

    def ek_public(self) -> bytes:
        """The marshalled TPM2B_PUBLIC of the TPM's RSA endorsement key."""
        with self._lock:
            self._check_open()
            return tpm_endorsement.ek_public(self._esapi)

    def ek_certificate(self) -> bytes | None:
        """The DER RSA EK certificate in the TPM's NV index 0x01C00002 (TCG), or None when the
        TPM has none (an swtpm made without ``swtpm_setup --create-ek-cert``)."""
        with self._lock:
            self._check_open()
            return tpm_endorsement.ek_certificate(self._esapi)

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
        blob, secret = tpm_endorsement.parse_credential(id_object, encrypted_secret)
        with self._lock:
            self._check_open()
            return tpm_endorsement.activate_credential(
                self._esapi, lambda: self._persistent_aik(scheme, hash_alg)[0], blob, secret
            )

    def pcr_extend(self, index: int, data: bytes) -> None:
        """Extend sha256 PCR ``index`` with SHA-256(``data``) (tests use it to change a PCR)."""
        if not 0 <= index <= 23:
            raise ValueError("PCR index must be 0..23")
        tss = load_tss()
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
