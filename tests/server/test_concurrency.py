"""Load on one endpoint: 200 concurrent requests from several clients, and malformed requests
interleaved with good ones. RSA work runs in worker threads, so none of it stalls the others."""

from __future__ import annotations

import asyncio
import json
import random

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from .wire import PATH, WireClient, open_response, seal

pytestmark = pytest.mark.slow

CLIENTS = 4
REQUESTS = 200


@pytest.fixture(scope="module")
def client_keys(client_key):
    # Several distinct clients: responses must go to the right key as well as the right id.
    others = [
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(CLIENTS - 1)
    ]
    return [client_key, *others]


def _clients(endpoint, keys, wire_for) -> list[WireClient]:
    return [wire_for(endpoint, client_key=key) for key in keys]


async def test_200_concurrent_requests_all_succeed(secure_endpoint, client_keys, wire_for):
    wires = _clients(secure_endpoint, client_keys, wire_for)
    limits = httpx2.Limits(max_connections=REQUESTS // CLIENTS)
    https = [httpx2.AsyncClient(verify=w.verify, timeout=120, limits=limits) for w in wires]
    try:

        async def one(i: int) -> tuple[str, str, dict]:
            owner = i % CLIENTS
            text = f"request number {i}"
            pid, response = await wires[owner].chat(https[owner], text)
            assert response.status_code == 200, response.text
            reply, _ = open_response(response.content, client_keys[owner])
            return pid, text, reply

        results = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    finally:
        await asyncio.gather(*(h.aclose() for h in https))
    assert len(results) == REQUESTS
    assert len({pid for pid, _, _ in results}) == REQUESTS
    for pid, text, reply in results:
        assert reply["_metadata"]["payload_id"] == pid
        assert reply["choices"][0]["message"]["content"] == text


def _malformed(wire: WireClient, kind: int) -> tuple[dict[str, str], bytes, int]:
    payload = {"model": "m", "messages": [{"role": "user", "content": "bad"}]}
    _, headers, body = wire.request(payload)
    if kind == 0:
        return headers, b"{not json", 400
    if kind == 1:
        envelope = json.loads(body)
        envelope["encrypted_payload"]["tag"] = "AAAAAAAAAAAAAAAAAAAAAA=="
        return headers, json.dumps(envelope).encode(), 400
    if kind == 2:
        del headers["X-Public-Key"]
        return headers, body, 400
    if kind == 3:
        envelope, _ = seal(b"\x00not json", wire.server_public_pem)
        return headers, json.dumps(envelope).encode(), 400
    headers["X-Security-Tier"] = "maximum"  # no TPM on this endpoint
    return headers, body, 503


async def test_malformed_requests_interleaved_with_good_ones(http_endpoint, client_keys, wire_for):
    wires = _clients(http_endpoint, client_keys, wire_for)
    rng = random.Random(1234)
    jobs = []
    for i in range(120):
        wire_index = rng.randrange(CLIENTS)
        jobs.append(("good", wire_index, i) if i % 2 == 0 else ("bad", wire_index, i % 5))

    async with httpx2.AsyncClient(timeout=120, limits=httpx2.Limits(max_connections=60)) as http:

        async def run(job):
            kind, wire_index, n = job
            wire = wires[wire_index]
            if kind == "good":
                pid, response = await wire.chat(http, f"good {n}")
                assert response.status_code == 200
                reply, _ = open_response(response.content, client_keys[wire_index])
                assert reply["_metadata"]["payload_id"] == pid
                assert reply["choices"][0]["message"]["content"] == f"good {n}"
                return "good"
            headers, body, status = _malformed(wire, n)
            response = await http.post(wire.base_url + PATH, headers=headers, content=body)
            assert response.status_code == status
            assert response.json()["detail"]
            return "bad"

        outcomes = await asyncio.gather(*(run(job) for job in jobs))
    assert outcomes.count("good") == 60
    assert outcomes.count("bad") == 60
