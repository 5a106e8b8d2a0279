"""Enrollment of a server's attestation key (the attestation extension, README).

:func:`enroll` fetches the server's endorsement key (EK) and persistent attestation key (AIK),
seals a random credential for that EK and that AIK's name with ``TPM2_MakeCredential`` (in the
native core: RSA-OAEP "IDENTITY", KDFa, AES-CFB, HMAC), and asks the server to recover it with
``TPM2_ActivateCredential``. Only a TPM that holds both the EK's private key and the AIK can, so
a correct answer proves the AIK lives in the TPM of that EK. The AIK's fingerprint is then
pinned in a pin file (keyed, locked and written like the server-key pin file); a client given
that file roots quotes in it (:func:`enrolled_aik`).

With ``ek_ca``, the EK itself is checked too: its certificate, served by the endpoint with its
issuers, must chain to a CA the caller trusts (the TPM's manufacturer; for swtpm, the local CA
``swtpm_setup --create-ek-cert`` used). Without it the EK is trusted on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import ssl
from dataclasses import dataclass
from typing import Any

import httpx2

from nomyo_native import _core
from nomyo_native._constants import ACTIVATE_PATH, ENROLLMENT_PATH
from nomyo_native._http_edge import enrolled_aik, split_credentials
from nomyo_native._pinfile import PinFile, normalize_origin
from nomyo_native.attestation import aik_residency_problem
from nomyo_native.errors import SecurityError

__all__ = ["ACTIVATE_PATH", "ENROLLMENT_PATH", "Enrollment", "enroll", "enrolled_aik"]

_MAX_RESPONSE_BYTES = 64 * 1024
_ATTR_RESTRICTED, _ATTR_SIGN = 0x00010000, 0x00040000
_NAME_ALGS = {0x000B: hashlib.sha256, 0x000C: hashlib.sha384}


@dataclass(frozen=True)
class Enrollment:
    origin: str
    aik_fingerprint: str
    ek_fingerprint: str
    newly_pinned: bool
    ek_certificate_verified: bool = False


def _fingerprint(public_area: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_area).hexdigest()


def _b64_field(data: Any, name: str) -> bytes:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or len(value) > _MAX_RESPONSE_BYTES:
        raise SecurityError(f"enrollment: the server's '{name}' is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SecurityError(f"enrollment: the server's '{name}' is not valid base64") from None


def _send(http: httpx2.Client, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, Any]:
    """(status, parsed JSON or None), reading at most _MAX_RESPONSE_BYTES of the body: the
    server is not trusted yet, so it cannot make us hold more."""
    # Identity encoding: the cap applies to what we hold, not to a compressed body.
    with http.stream(method, url, headers={"Accept-Encoding": "identity"}, **kwargs) as response:
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            raise SecurityError(f"enrollment: the {what} answer is compressed (not asked for)")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > _MAX_RESPONSE_BYTES:
                raise SecurityError(f"enrollment: the {what} answer is too large")
        status = response.status_code
    if status != 200:
        return status, None
    try:
        return status, json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise SecurityError(f"enrollment: the {what} answer is not JSON") from None


def _aik_name(aik: dict[str, Any]) -> bytes:
    """The AIK's TPM Name (nameAlg || H(TPMT_PUBLIC)), computed here, never taken from the
    server."""
    name_alg: int = aik["name_alg"]
    hash_fn = _NAME_ALGS.get(name_alg)
    if hash_fn is None:
        raise SecurityError("enrollment: the AIK's nameAlg is not SHA-256 or SHA-384")
    return name_alg.to_bytes(2, "big") + hash_fn(aik["public_area"]).digest()


def enroll(
    base_url: str,
    pin_file: str | os.PathLike[str],
    *,
    verify: bool | str | ssl.SSLContext = True,
    timeout: float = 60.0,
    transport: httpx2.BaseTransport | None = None,
    ek_ca: str | os.PathLike[str] | None = None,
) -> Enrollment:
    """Enroll ``base_url``'s attestation key and pin it in ``pin_file``.

    With ``ek_ca`` (a PEM file of trusted EK CAs), the EK certificate chain the server serves
    must lead from the EK it offers to one of them (:func:`nomyo_native.ekcert.verify_ek_chain`);
    without it the EK is trusted on first use.

    Raises :class:`SecurityError` when the server offers no valid keys, fails the activation
    challenge, or its AIK differs from the one pinned for it (a TPM reset or another TPM:
    the message says how to re-enroll); ``httpx2`` errors when it cannot be reached.
    """
    origin = normalize_origin(base_url)
    # user:password in the URL goes as Basic auth, never into a URL httpx2 would log.
    base, auth = split_credentials(base_url.rstrip("/"))
    with httpx2.Client(verify=verify, timeout=timeout, transport=transport, auth=auth) as http:
        status, data = _send(http, "GET", base + ENROLLMENT_PATH, "enrollment")
        if status != 200:
            raise SecurityError(
                f"enrollment: {origin} offers no enrollment (HTTP {status}); it needs "
                "a persistent attestation key (nomyo-native serve --tpm swtpm --aik persistent)"
            )
        ek_raw, ek, aik = _offered_keys(data, ek_ca)
        challenge = secrets.token_bytes(32)
        try:
            blob, secret = _core.tpm_make_credential(ek_raw, _aik_name(aik), challenge)
        except _core.TpmFormatError as exc:
            raise SecurityError(f"enrollment: cannot challenge this EK ({exc})") from None
        status, answer = _send(
            http,
            "POST",
            base + ACTIVATE_PATH,
            "activation",
            json={
                "credential_blob_b64": base64.b64encode(blob).decode("ascii"),
                "encrypted_secret_b64": base64.b64encode(secret).decode("ascii"),
            },
        )
    recovered = _b64_field(answer, "credential_b64") if status == 200 else b""
    if not hmac.compare_digest(recovered, challenge):
        raise SecurityError(
            f"enrollment: {origin} failed the credential-activation challenge (HTTP "
            f"{status}): its AIK is not resident in the TPM of the EK it offered"
        )
    aik_fp = _fingerprint(aik["public_area"])
    newly_pinned = _pin(pin_file, base_url, origin, aik_fp)
    return Enrollment(
        origin, aik_fp, _fingerprint(ek["public_area"]), newly_pinned, ek_ca is not None
    )


def _offered_keys(
    offer: Any, ek_ca: str | os.PathLike[str] | None
) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """The EK (marshalled, and parsed) and the AIK (parsed) the enrollment offer holds, once
    they are well formed, the EK's certificate chain leads to ``ek_ca`` (when given), and the
    AIK is a restricted signing key whose private part cannot have been made outside a TPM."""
    ek_raw = _b64_field(offer, "ek_public_b64")
    aik_raw = _b64_field(offer, "aik_public_b64")
    try:
        ek = _core.tpm_parse_public(ek_raw)
        aik = _core.tpm_parse_public(aik_raw)
    except _core.TpmFormatError as exc:
        raise SecurityError(f"enrollment: the server's keys are malformed ({exc})") from None
    if ek_ca is not None:
        _verify_ek_certificate(offer, ek, ek_ca)
    attrs = aik["object_attributes"]
    if not (attrs & _ATTR_RESTRICTED and attrs & _ATTR_SIGN):
        raise SecurityError("enrollment: the offered AIK is not a restricted signing key")
    # Activation proves the key is loaded in the EK's TPM, not that it was born there: a
    # software key imported into the TPM activates too, and its software copy signs anything.
    residency = aik_residency_problem(attrs)
    if residency is not None:
        raise SecurityError(f"enrollment: refused: {residency}")
    return ek_raw, ek, aik


def _pin(pin_file: str | os.PathLike[str], base_url: str, origin: str, aik_fp: str) -> bool:
    """Pin ``aik_fp`` for ``base_url``; True when it was not pinned before. A different key
    already pinned is refused, with how to re-enroll when the change is expected."""
    pins = PinFile(pin_file)
    known = pins.pinned(base_url)
    if known is not None and known != aik_fp:
        raise SecurityError(
            f"enrollment: the attestation key of {origin} is {aik_fp}, but {known} is enrolled "
            f"in {pins.path} (the TPM was reset or replaced, or someone is in the middle). If "
            f"the change is expected, remove the line for {origin} from {pins.path} and run "
            f"'nomyo-native attest enroll {origin} --pin-file {pins.path}' again."
        )
    pins.check(base_url, aik_fp)
    return known is None


def _verify_ek_certificate(offer: Any, ek: dict[str, Any], ek_ca: str | os.PathLike[str]) -> None:
    from nomyo_native.ekcert import EkChainError, load_pem_certificates, verify_ek_chain

    with open(ek_ca, encoding="ascii") as handle:
        trusted = load_pem_certificates(handle.read(1024 * 1024))
    chain_pem = offer.get("ek_certificate_chain_pem") if isinstance(offer, dict) else None
    if not isinstance(chain_pem, list) or not all(isinstance(c, str) for c in chain_pem):
        raise EkChainError("enrollment: the server serves no EK certificate chain")
    chain = [der for pem in chain_pem for der in load_pem_certificates(pem)]
    if ek["spki_der"] is None:
        raise EkChainError("enrollment: the offered EK is not an RSA or P-256/P-384 key")
    verify_ek_chain(chain, trusted, ek["spki_der"])
