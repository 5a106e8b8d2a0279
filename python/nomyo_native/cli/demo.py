"""``nomyo-native demo``: start a local endpoint in this process, send one encrypted chat to
it, verify the attestation, and print the reply, the verdict and the timings."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

from nomyo_native.cli._common import needs_server_extra, verdict_label
from nomyo_native.server.interrupts import run_interruptible

if TYPE_CHECKING:
    from nomyo_native.server.runner import RunningServer
    from nomyo_native.types import ChatCompletion, ResponseMetadata


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start a local HTTPS endpoint with TPM attestation and send one encrypted chat",
        description=(
            "Start the secure endpoint in this process on a free loopback port, over HTTPS "
            "with a throwaway CA and (when swtpm is installed) real TPM quotes; send one "
            "encrypted chat completion with the nomyo-native client; verify the attestation; "
            "print the reply, the server key fingerprint, the verdict and the timings."
        ),
    )
    parser.add_argument("--message", default="Hello from nomyo-native!", help="text to send")
    parser.add_argument(
        "--no-tpm", action="store_true", help="skip swtpm even when it is installed"
    )


def _tpm_for_demo(no_tpm: bool) -> tuple[str, str]:
    if no_tpm:
        return "none", "TPM: off (--no-tpm)"
    if shutil.which("swtpm") is None:
        return "none", (
            "TPM: swtpm is not installed, so responses carry no quote "
            "(apt-get install swtpm swtpm-tools to see attestation)"
        )
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        return "none", "TPM: tpm2-pytss is missing (pip install 'nomyo-native[tpm]')"
    return "swtpm", (
        "TPM: private swtpm with a persistent attestation key; the demo started that TPM "
        "itself, so it pins the key (trusted_aik) and its quotes can be verified"
    )


async def _demo_chat(
    endpoint: RunningServer, message: str, tier: str
) -> tuple[ChatCompletion, list[tuple[str, float]]]:
    import nomyo_native

    client = nomyo_native.SecureChatCompletion(
        base_url=endpoint.base_url,
        ca_bundle=str(endpoint.ca_path),
        server_key_fingerprint=endpoint.server_key_fingerprint,
        trusted_aik=endpoint.aik_fingerprint,
    )
    messages = [{"role": "user", "content": message}]
    timings = []
    async with client:
        started = time.perf_counter()
        response = await client.create(model="demo-echo", messages=messages, security_tier=tier)
        timings.append(
            ("first request (client keygen, key fetch+pin)", time.perf_counter() - started)
        )
        started = time.perf_counter()
        await client.create(model="demo-echo", messages=messages, security_tier=tier)
        timings.append(
            ("second request (warm: seal, TLS, quote, open)", time.perf_counter() - started)
        )
    return response, timings


def _attestation_verdict(metadata: ResponseMetadata, endpoint: RunningServer) -> str:
    block = metadata.get("tpm_attestation")
    if block is None or not block.get("is_available"):
        return "not available (the endpoint has no TPM)"
    try:
        from nomyo_native.attestation import verify_attestation
    except ImportError as exc:
        return f"not checked: attestation verification unavailable ({exc})"
    result = verify_attestation(
        block,
        metadata["payload_id"],
        trusted_aik=endpoint.aik_fingerprint,
        server_key_fingerprint=endpoint.server_key_fingerprint,
    )
    return f"{verdict_label(result)} - {result.summary}"


@needs_server_extra
def run(args: argparse.Namespace) -> int:
    try:
        return _run_demo(args)
    except KeyboardInterrupt:  # Ctrl-C: everything was released on the way out
        print("demo: interrupted", file=sys.stderr)
        return 130


def _run_demo(args: argparse.Namespace) -> int:
    from nomyo_native.server import ServerConfig, start_server
    from nomyo_native.server.runner import termination_unwinds

    timings: list[tuple[str, float]] = []
    tpm, tpm_note = _tpm_for_demo(args.no_tpm)
    print(tpm_note)
    # The endpoint's own temporary TLS directory (not a kept --tls-dir): guarded, so its key is
    # gone on every exit, SIGKILL included; SIGTERM/SIGHUP/SIGQUIT unwind like Ctrl-C.
    with termination_unwinds(as_interrupt=True):
        started = time.perf_counter()
        try:
            endpoint = start_server(ServerConfig(port=0, tls_self_signed=True, tpm=tpm))
        except Exception as exc:
            print(f"demo: the endpoint did not start: {exc}", file=sys.stderr)
            return 1
        timings.append(("start endpoint (RSA-4096 key, TLS, TPM)", time.perf_counter() - started))
        with endpoint:
            print(f"endpoint          {endpoint.base_url}")
            print(f"server key        {endpoint.server_key_fingerprint}")
            if endpoint.aik_fingerprint is not None:
                print(f"AIK (pinned)      {endpoint.aik_fingerprint}")
            print(f"TLS CA            {endpoint.ca_path}")
            tier = "maximum" if endpoint.tpm_available else "high"
            try:
                response, request_timings = run_interruptible(
                    _demo_chat(endpoint, args.message, tier)
                )
            except Exception as exc:
                print(f"demo: the encrypted request failed: {type(exc).__name__}: {exc}")
                return 1
            timings += request_timings
            metadata = response["_metadata"]
            started = time.perf_counter()
            verdict = _attestation_verdict(metadata, endpoint)
            timings.append(("verify attestation", time.perf_counter() - started))
    reply = response["choices"][0]["message"].get("content")
    print(f"security tier     {metadata.get('security_tier')}")
    print(f"payload id        {metadata.get('payload_id')}")
    print(f"reply             {reply}")
    block = metadata.get("tpm_attestation")
    if block is not None and block.get("is_available"):
        values = block.get("pcr_values", {}).get("sha256", {})
        shown = ", ".join(f"{index}={value[:16]}..." for index, value in values.items())
        print(f"quoted PCRs       {block.get('pcr_banks')}: {shown}")
        print("                  (PCR 10: the endpoint measured its own code into swtpm at start)")
    print(f"attestation       {verdict}")
    print("timings")
    for label, seconds in timings:
        print(f"  {label:<46} {seconds * 1000:9.1f} ms")
    return 0
