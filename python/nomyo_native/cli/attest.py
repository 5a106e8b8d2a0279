"""``nomyo-native attest``: verify the TPM quote saved from a response, capture a PCR
baseline from one, or enroll a server's attestation key (credential activation) and pin it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nomyo_native.cli._common import verdict_label


def add_parser(subparsers: Any) -> None:
    attest = subparsers.add_parser(
        "attest",
        help="verify TPM attestation saved from a response, or capture a PCR baseline",
        description=(
            "FILE is a saved response (with _metadata), its _metadata, or the tpm_attestation "
            "block itself, as JSON; '-' reads standard input."
        ),
    )
    actions = attest.add_subparsers(dest="attest_command", metavar="{baseline,verify,enroll}")
    actions.required = True
    _add_enroll_parser(actions)
    _add_baseline_parser(actions)
    _add_verify_parser(actions)


def _add_enroll_parser(actions: Any) -> None:
    enroll = actions.add_parser(
        "enroll",
        help="enroll a server's attestation key (credential activation) and pin it",
        description=(
            "Fetch the server's endorsement key and persistent attestation key, challenge it "
            "with TPM2_MakeCredential (made here) and check its TPM2_ActivateCredential answer: "
            "only the TPM holding both keys can answer. Then pin the attestation key in "
            "--pin-file; clients given aik_pin_file= root quotes in it. With --ek-ca the EK's "
            "certificate chain must lead to that CA; without it the EK is trusted on first "
            "use. Exit status 0 "
            "enrolled, 1 refused (failed challenge, changed key), 2 unreachable or bad options."
        ),
    )
    enroll.add_argument("url", metavar="URL", help="the server's base URL")
    enroll.add_argument("--pin-file", required=True, metavar="FILE", help="AIK pin file")
    enroll.add_argument("--ca-bundle", metavar="PATH", help="CA file to trust for the server")
    enroll.add_argument(
        "--ek-ca",
        metavar="CA.pem",
        help="trusted EK CA certificates: the server's EK certificate chain must lead to one "
        "(the TCG EK profile: empty subject, critical SAN and EKU 2.23.133.8.1 are accepted)",
    )


def _add_baseline_parser(actions: Any) -> None:
    baseline = actions.add_parser(
        "baseline",
        help="capture known-good PCR values from a response you trust",
        description=(
            "Check that the quote in FILE is bound (signed by the AIK in it, TPM-generated, PCR "
            "digest consistent; and made for --payload-id when given) and write its PCR values "
            "as a baseline JSON file for 'attest verify --baseline' and the client's "
            "pcr_baseline=. The AIK need not be pinned: capture from a response you trust. Exit "
            "status 2 when the quote is not bound or the input is unreadable."
        ),
    )
    baseline.add_argument("file", metavar="FILE", help="saved response/_metadata JSON, or '-'")
    baseline.add_argument(
        "--payload-id", help="also require the quote to be bound to this request id"
    )
    baseline.add_argument(
        "-o", "--output", metavar="OUT", help="write the baseline here (default: stdout)"
    )


def _add_verify_parser(actions: Any) -> None:
    verify = actions.add_parser(
        "verify",
        help="verify the TPM quote in a saved response",
        description=(
            "Run every check of the quote in FILE and print the verdict: VERIFIED (bound and "
            "hardware-rooted: signed by the --trusted-aik key), BOUND (consistent and made for "
            "this request, but by a key nobody vouches for: a server without a TPM can make "
            "such a quote) or NOT BOUND. Exit status: 0 when the quote is bound and, with "
            "--trusted-aik, verified; 1 otherwise; 2 unreadable input or options."
        ),
    )
    verify.add_argument("file", metavar="FILE", help="saved response/_metadata JSON, or '-'")
    verify.add_argument("--payload-id", required=True, help="the X-Payload-ID of that request")
    verify.add_argument("--baseline", metavar="BASELINE", help="PCR baseline JSON file")
    verify.add_argument(
        "--trusted-aik",
        metavar="AIK",
        help="pinned AIK: 'sha256:<hex>' of its marshalled TPMT_PUBLIC, or a PEM file",
    )
    verify.add_argument(
        "--server-key",
        metavar="FP",
        help="fingerprint 'sha256:<hex>' of the server key the request was encrypted to: checks "
        "the extension's binding (quotes by a persistent AIK bind it, so a relayed one fails)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from nomyo_native import attestation

    if args.attest_command == "enroll":
        return _cmd_attest_enroll(args)
    try:
        block = _read_attestation_block(args.file)
        if args.attest_command == "baseline":
            baseline = attestation.capture_baseline(block, args.payload_id)
            if args.output:
                attestation.save_baseline(baseline, args.output)
                print(f"baseline of {baseline['pcr_banks']} written to {args.output}")
            else:
                print(json.dumps(baseline, indent=2, sort_keys=True))
            return 0
        trusted_aik = _read_trusted_aik(args.trusted_aik)
        result = attestation.verify_attestation(
            block,
            args.payload_id,
            pcr_baseline=args.baseline,
            trusted_aik=trusted_aik,
            server_key_fingerprint=args.server_key,
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"nomyo-native attest: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for check in result.checks:
            mark = {True: "ok  ", False: "FAIL", None: "-   "}[check.passed]
            print(f"{mark} {check.name:<16} {check.detail}")
        if result.aik_fingerprint:
            print(f"AIK  {result.aik_fingerprint}")
        print(f"verdict: {verdict_label(result)}")
        print(result.summary)
    return 0 if (result.verified if trusted_aik is not None else result.bound) else 1


def _cmd_attest_enroll(args: argparse.Namespace) -> int:
    import ssl

    import httpx2

    from nomyo_native.enrollment import enroll
    from nomyo_native.errors import SecurityError

    try:
        verify = ssl.create_default_context(cafile=args.ca_bundle) if args.ca_bundle else True
        done = enroll(args.url, args.pin_file, verify=verify, ek_ca=args.ek_ca)
    except SecurityError as exc:
        print(f"nomyo-native attest enroll: refused: {exc}", file=sys.stderr)
        return 1
    except (httpx2.HTTPError, OSError, ValueError) as exc:
        print(f"nomyo-native attest enroll: error: {exc}", file=sys.stderr)
        return 2
    state = "enrolled" if done.newly_pinned else "already enrolled (unchanged)"
    print(f"{done.origin}: {state}")
    print(f"  AIK   {done.aik_fingerprint}  (pinned in {args.pin_file})")
    how = "certificate chain verified" if done.ek_certificate_verified else "trusted on first use"
    print(f"  EK    {done.ek_fingerprint}  ({how})")
    return 0


def _read_attestation_block(source: str) -> Any:
    """The tpm_attestation block of a saved response, its _metadata, or the block itself."""
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("_metadata"), dict):
        data = data["_metadata"]
    if isinstance(data, dict) and "tpm_attestation" in data:
        return data["tpm_attestation"]
    if isinstance(data, dict) and "is_available" in data:
        return data
    raise ValueError(f"{source} holds no tpm_attestation block")


def _read_trusted_aik(value: str | None) -> str | None:
    """A 'sha256:' fingerprint as is; anything else is the path of a PEM file."""
    if value is None or value.startswith("sha256:"):
        return value
    with open(value, encoding="ascii") as handle:
        return handle.read()
