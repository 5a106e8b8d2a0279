"""Enrollment on the TPM side (the extension): the endorsement key (EK), its certificate in NV,
and TPM2_ActivateCredential, which only the TPM holding both the EK and the AIK can answer.

Each function takes an open ESAPI context; :class:`nomyo_native.server.tpm.TpmQuoter` calls
them under its lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from nomyo_native.server.tss import TpmError, load_tss

# PolicySecret(TPM_RH_ENDORSEMENT): the authPolicy of the TCG default EK templates.
_EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
_EK_CERT_NV_INDEX = 0x01C00002  # TCG: the RSA 2048 EK certificate
_NV_CHUNK = 512


def ek_template() -> Any:
    """The TCG default RSA 2048 EK template (EK Credential Profile, template L-1): the key an
    EK certificate certifies; its policy is PolicySecret(TPM_RH_ENDORSEMENT)."""
    tss = load_tss()
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


def ek_public(esapi: Any) -> bytes:
    """The marshalled TPM2B_PUBLIC of the TPM's RSA endorsement key."""
    tss = load_tss()
    try:
        handle, public, _, _, _ = esapi.create_primary(
            None, ek_template(), tss.constants.ESYS_TR.ENDORSEMENT
        )
        esapi.flush_context(handle)
    except tss.TSS2_Exception as exc:
        raise TpmError(f"TPM could not create the endorsement key: {exc}") from None
    marshalled: bytes = public.marshal()  # tpm2-pytss is untyped
    return marshalled


def ek_certificate(esapi: Any) -> bytes | None:
    """The DER RSA EK certificate in the TPM's NV index 0x01C00002 (TCG), or None when the
    TPM has none (an swtpm made without ``swtpm_setup --create-ek-cert``)."""
    tss = load_tss()
    try:
        index = esapi.tr_from_tpmpublic(_EK_CERT_NV_INDEX)
    except tss.TSS2_Exception:
        return None
    try:
        public, _ = esapi.nv_read_public(index)
        size = int(public.nvPublic.dataSize)
        data = b""
        while len(data) < size:
            chunk = esapi.nv_read(
                index, min(_NV_CHUNK, size - len(data)), len(data), auth_handle=index
            )
            data += bytes(chunk)
    except tss.TSS2_Exception as exc:
        raise TpmError(f"cannot read the EK certificate: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            esapi.tr_close(index)
    return data


def parse_credential(id_object: bytes, encrypted_secret: bytes) -> tuple[Any, Any]:
    """The TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET of MakeCredential, exactly (ValueError
    for anything else, trailing bytes included)."""
    types = load_tss().types
    try:
        blob, used = types.TPM2B_ID_OBJECT.unmarshal(id_object)
        secret, used_secret = types.TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
    except Exception:
        raise ValueError("not a TPM2B_ID_OBJECT and a TPM2B_ENCRYPTED_SECRET") from None
    if used != len(id_object) or used_secret != len(encrypted_secret):
        raise ValueError("trailing bytes after the credential structures")
    return blob, secret


def activate_credential(esapi: Any, load_aik: Callable[[], Any], blob: Any, secret: Any) -> bytes:
    """TPM2_ActivateCredential of ``blob``/``secret`` for the AIK ``load_aik`` returns (its
    ESYS handle), under the EK: the credential, or TpmError when it was not made for this
    TPM's EK and that AIK's name."""
    tss = load_tss()
    types, constants = tss.types, tss.constants
    ek = session = None
    try:
        aik = load_aik()
        ek, _, _, _, _ = esapi.create_primary(None, ek_template(), constants.ESYS_TR.ENDORSEMENT)
        session = esapi.start_auth_session(
            constants.ESYS_TR.NONE,
            constants.ESYS_TR.NONE,
            constants.TPM2_SE.POLICY,
            types.TPMT_SYM_DEF(algorithm=constants.TPM2_ALG.NULL),
            constants.TPM2_ALG.SHA256,
        )
        esapi.policy_secret(constants.ESYS_TR.ENDORSEMENT, session)
        credential = esapi.activate_credential(
            aik, ek, blob, secret, session1=constants.ESYS_TR.PASSWORD, session2=session
        )
    except tss.TSS2_Exception as exc:
        raise TpmError(f"credential activation failed: {exc}") from None
    finally:
        for handle in (session, ek):
            if handle is not None:
                with contextlib.suppress(Exception):
                    esapi.flush_context(handle)
    return bytes(credential)
