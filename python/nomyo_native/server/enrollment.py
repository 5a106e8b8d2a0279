"""The attestation extension's enrollment endpoints (README, "Attestation extension").

``GET /v1/attestation/enrollment`` offers the TPM's endorsement key and the persistent
attestation key; ``POST /v1/attestation/activate`` answers a credential-activation challenge
(``TPM2_MakeCredential`` made by the client for that EK and that AIK's name) with
``TPM2_ActivateCredential`` in the TPM. Only a server whose AIK is persistent offers them (404
otherwise): a per-request AIK has nothing to enroll.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nomyo_native.server.app import EndpointState, Refusal, _read_body, _Reservation
from nomyo_native.server.tpm import TpmError

ENROLLMENT_PATH = "/v1/attestation/enrollment"
ACTIVATE_PATH = "/v1/attestation/activate"
# A TPM2B_ID_OBJECT and a TPM2B_ENCRYPTED_SECRET in base64, with room to spare.
MAX_ACTIVATE_BODY_BYTES = 8 * 1024

logger = logging.getLogger(__name__)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def _field(body: dict[str, Any], name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, str):
        raise Refusal(400, f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(400, f"'{name}' is not valid base64") from None


def enrollment_routes(state: EndpointState) -> list[Route]:
    def quoter() -> Any:
        if state.quoter is None or not state.quoter.persistent:
            raise Refusal(404, "this server offers no enrollment (no persistent attestation key)")
        return state.quoter

    async def offer(_: Request) -> Response:
        try:
            tpm = quoter()
            scheme = {"scheme": state.tpm_scheme, "hash_alg": state.tpm_hash}
            ek = await run_in_threadpool(tpm.ek_public)
            aik = await run_in_threadpool(lambda: tpm.aik_public(**scheme))
            ek_cert = await run_in_threadpool(tpm.ek_certificate)
        except Refusal as refusal:
            return JSONResponse({"detail": refusal.detail}, status_code=refusal.status)
        except TpmError as exc:
            logger.error("enrollment offer failed: %s", exc)
            return JSONResponse({"detail": "TPM unavailable"}, status_code=503)
        offer: dict[str, str | list[str]] = {"ek_public_b64": _b64(ek), "aik_public_b64": _b64(aik)}
        if ek_cert is not None:
            # The whole chain the verifier needs: the TPM's own certificate, then its issuers.
            offer["ek_certificate_chain_pem"] = [_pem(ek_cert), *state.ek_chain_pem]
        return JSONResponse(offer)

    async def activate(request: Request) -> Response:
        reservation = _Reservation()
        try:
            tpm = quoter()
            raw = await _read_body(request, state, reservation)
            if len(raw) > MAX_ACTIVATE_BODY_BYTES:
                raise Refusal(400, "activation request is too large")
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise Refusal(400, "activation request is not valid JSON") from None
            if not isinstance(body, dict):
                raise Refusal(400, "activation request must be a JSON object")
            id_object = _field(body, "credential_blob_b64")
            secret = _field(body, "encrypted_secret_b64")
            try:
                credential = await run_in_threadpool(
                    lambda: tpm.activate_credential(
                        id_object, secret, scheme=state.tpm_scheme, hash_alg=state.tpm_hash
                    )
                )
            except ValueError as exc:
                raise Refusal(400, str(exc)) from None
            except TpmError:
                # The challenge was not made for this TPM's EK and this AIK: say so, no detail.
                raise Refusal(422, "credential activation failed") from None
        except Refusal as refusal:
            return JSONResponse({"detail": refusal.detail}, status_code=refusal.status)
        finally:
            state.body_budget.give_back(reservation.size)
        return JSONResponse({"credential_b64": _b64(credential)})

    return [
        Route(ENROLLMENT_PATH, offer, methods=["GET"]),
        Route(ACTIVATE_PATH, activate, methods=["POST"]),
    ]
