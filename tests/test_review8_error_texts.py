"""Review: what a malicious server can put into the client's exception texts (and so its logs)
through its certificate. rustls's refusal for another name lists every name the certificate
presents, verbatim: a SAN with a line break writes a fake line into a log, three hundred SANs
make an 8 KB message. The core's texts must stay one bounded line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography import x509

from nomyo_native import _core
from nomyo_native._core_tls import as_ssl_error

sys.path.insert(0, str(Path(__file__).parent))
from test_review8_trust_parity import Spec, _new_server, _pump_server, leaf_spec, make_chain

# Longest core error text accepted here: room for a reason and the names that matter.
MAX_TEXT = 2048

HOSTILE_SANS = [x509.DNSName(f"evil\nFORGED LOG LINE {i}\r.example") for i in range(3)] + [
    x509.DNSName(f"n{i}.example") for i in range(300)
]


def _refusal(tmp_path: Path) -> _core.TlsCertificateError:
    chain = make_chain(tmp_path, Spec(), [], leaf_spec(sans=HOSTILE_SANS))
    session = _core.TlsSession(_core.TlsConfig(chain.store_pem), "localhost")
    server = _new_server(chain)
    with pytest.raises(_core.TlsCertificateError) as caught:
        for _ in range(10):
            reply = _pump_server(server, session.take_tls())
            if reply:
                session.receive(reply)
    return caught.value


def _printable_line(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def test_the_ssl_error_the_client_raises_is_one_short_line(tmp_path: Path) -> None:
    error = as_ssl_error(_refusal(tmp_path), "localhost")
    assert _printable_line(str(error)) and len(str(error)) <= MAX_TEXT


def test_the_cores_refusal_text_is_one_bounded_line(tmp_path: Path) -> None:
    refusal = _refusal(tmp_path)
    assert refusal.reason == "NotValidForName"
    assert _printable_line(str(refusal)), "a SAN's line break reaches the exception text"
    assert len(str(refusal)) <= MAX_TEXT
