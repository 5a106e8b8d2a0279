"""Writes the fixtures of rust/src/tls_parity_tests.rs: review8's path cases
(tests/test_review8_trust_parity.py, ``path_cases``) over fixed dates, 2024 to 2049, so that the
Rust tests verify them at a fixed time. Each case: <slug>-store.pem (the trust store) and
<slug>-chain.pem (what the server sends, leaf first).

Run from the repository root with the project's venv: .venv/bin/python rust/tests/tls_parity/make_fixtures.py
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).resolve().parent
REVIEW8 = HERE.parents[2] / "tests" / "test_review8_trust_parity.py"
VALIDITY = (
    datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2049, 12, 31, tzinfo=datetime.UTC),
)


def main() -> None:
    spec = importlib.util.spec_from_file_location("review8_trust_parity", REVIEW8)
    assert spec is not None and spec.loader is not None
    review8 = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = review8  # dataclasses look their module up there
    spec.loader.exec_module(review8)
    pem = serialization.Encoding.PEM
    for path_case in review8.path_cases(VALIDITY).values():
        store = b"".join(c.public_bytes(pem) for c in path_case.store)
        served = b"".join(c.public_bytes(pem) for c in path_case.served)
        (HERE / f"{path_case.slug}-store.pem").write_bytes(store)
        (HERE / f"{path_case.slug}-chain.pem").write_bytes(served)
        print(path_case.slug, "accepted" if path_case.accepted else "refused")


if __name__ == "__main__":
    main()
