"""TPM attestation costs: a quote from swtpm (a fresh AIK each time, as the endpoint makes one per
request) and its verification by the client, per signature scheme. No target: this measures
what attestation adds to a request."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from nomyo_native.attestation import verify_attestation
from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter

SCHEMES = ("ecdsa", "rsassa", "rsapss")

pytestmark = pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm is not installed")


@pytest.fixture(scope="module")
def quoter() -> Iterator[TpmQuoter]:
    with SwtpmProcess() as tpm, TpmQuoter(tpm.tcti) as quoter:
        yield quoter


@pytest.mark.benchmark(group="tpm-quote")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_quote(benchmark: Any, quoter: TpmQuoter, scheme: str) -> None:
    ids = (f"bench-{n}" for n in itertools.count())
    block = benchmark.pedantic(
        lambda: quoter.quote(next(ids), scheme=scheme), rounds=10, warmup_rounds=1
    )
    assert block["is_available"] is True


@pytest.mark.benchmark(group="tpm-verify")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_verify(benchmark: Any, quoter: TpmQuoter, scheme: str) -> None:
    block = quoter.quote("bench-verify", scheme=scheme)
    result = benchmark(verify_attestation, block, "bench-verify")
    assert result.verified, result.summary
