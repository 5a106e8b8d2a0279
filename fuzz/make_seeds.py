"""Write the seed inputs of the fuzz targets into fuzz/seeds/<target>/ (committed).

Seeds give libFuzzer valid structures to mutate from, so that it reaches the deep paths
(base64 fields, length checks, unwrap, PBES2) instead of stalling at the JSON or PEM parser.
Every key here is a throwaway made for this purpose. The first byte of each seed selects the
target's mode (see the targets' doc comments). Needs pyca/cryptography and the openssl CLI, and
for the TPM seeds swtpm and tpm2-pytss (the project's .venv has them).

usage: python fuzz/make_seeds.py
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEEDS = Path(__file__).resolve().parent / "seeds"
RAW, ROUND_TRIP, TAMPER = b"\x00", b"\x01", b"\x02"
NO_PASSWORD, PASSWORD, PUBLIC = b"\x00", b"\x01", b"\x02"
SEED_PASSWORD = b"fuzz-password"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope(public_key: rsa.RSAPublicKey, plaintext: bytes, **extra: object) -> bytes:
    key, nonce = AESGCM.generate_key(256), os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    doc = {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {
            "ciphertext": _b64(sealed[:-16]),
            "nonce": _b64(nonce),
            "tag": _b64(sealed[-16:]),
        },
        "encrypted_aes_key": _b64(public_key.encrypt(key, oaep)),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
        **extra,
    }
    return json.dumps(doc).encode()


def write(target: str, name: str, data: bytes) -> None:
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def envelope_seeds() -> None:
    public = rsa.generate_private_key(65537, 2048).public_key()
    reply = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "_metadata": {"payload_id": "p"},
        }
    ).encode()
    write("open_envelope", "raw-valid", RAW + envelope(public, reply))
    write("open_envelope", "raw-processed-at", RAW + envelope(public, b"{}", processed_at=1.5))
    write("open_envelope", "raw-empty-object", RAW + b"{}")
    write("open_envelope", "round-trip-reply", ROUND_TRIP + reply)
    write("open_envelope", "round-trip-empty", ROUND_TRIP)
    write("open_envelope", "tamper-nonce", TAMPER + bytes([0, 140, ord("A"), 1, 10, ord("x")]))


def _openssl_pkcs8(private_pem: bytes, *options: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in"
        source.write_bytes(private_pem)
        command = [
            "openssl",
            "pkcs8",
            "-topk8",
            "-in",
            str(source),
            "-passout",
            "pass:fuzz-password",
        ]
        return subprocess.run(  # noqa: S603 (fixed argv, no shell)
            [*command, *options],
            check=True,
            capture_output=True,
        ).stdout


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(x) for x in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def hostile_pbes2_pem(kdf: bytes) -> bytes:
    """An ENCRYPTED PRIVATE KEY whose KDF parameters are the attack: the key derivation runs
    before any decryption, so the encrypted data itself can be random."""
    seq = lambda *parts: _der(0x30, b"".join(parts))  # noqa: E731
    aes = seq(_oid("2.16.840.1.101.3.4.1.42"), _der(0x04, os.urandom(16)))
    algorithm = seq(_oid("1.2.840.113549.1.5.13"), seq(kdf, aes))
    der = seq(algorithm, _der(0x04, os.urandom(1232)))
    text = base64.b64encode(der).decode()
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    label = "ENCRYPTED PRIVATE KEY"
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def scrypt_kdf(cost: int, block_size: int, parallelization: int) -> bytes:
    params = _der(0x04, os.urandom(8)) + _int(cost) + _int(block_size) + _int(parallelization)
    return _der(0x30, _oid("1.3.6.1.4.1.11591.4.11") + _der(0x30, params))


def pbkdf2_kdf(iterations: int) -> bytes:
    hmac_sha256 = _der(0x30, _oid("1.2.840.113549.2.9") + b"\x05\x00")
    params = _der(0x04, os.urandom(8)) + _int(iterations) + hmac_sha256
    return _der(0x30, _oid("1.2.840.113549.1.5.12") + _der(0x30, params))


def scrypt_budget_seeds() -> None:
    """scrypt parameters past the 256 MiB budget in each of its tables (issue 10 finding 9):
    B = p·r·128 (4 GiB here, which the old bound missed), V + B + T just over the budget, and
    a wide p·r with the smallest N."""
    write(
        "load_key",
        "regress-scrypt-huge-b",
        PASSWORD + hostile_pbes2_pem(scrypt_kdf(2, 65535, 512)),
    )
    write(
        "load_key",
        "regress-scrypt-just-over-budget",
        PASSWORD + hostile_pbes2_pem(scrypt_kdf(1 << 18, 8, 2)),
    )
    write(
        "load_key",
        "regress-scrypt-wide-pr",
        PASSWORD + hostile_pbes2_pem(scrypt_kdf(2, 32768, 70)),
    )


def key_seeds() -> None:
    key = rsa.generate_private_key(65537, 2048)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write("load_key", "pkcs8", NO_PASSWORD + pkcs8)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write("load_key", "pkcs1", NO_PASSWORD + pkcs1)
    # Low KDF costs keep each fuzz iteration fast; the fuzzer mutates the parameters anyway.
    write(
        "load_key",
        "pbes2-pbkdf2",
        PASSWORD + _openssl_pkcs8(pkcs8, "-v2", "aes-256-cbc", "-iter", "1"),
    )
    write(
        "load_key",
        "pbes2-scrypt",
        PASSWORD + _openssl_pkcs8(pkcs8, "-scrypt", "-scrypt_N", "2", "-scrypt_r", "1"),
    )
    # Regressions: each once aborted or could hang the process (see fuzz/seeds/load_key/regress-*).
    write(
        "load_key",
        "regress-scrypt-huge-memory",
        PASSWORD + hostile_pbes2_pem(scrypt_kdf(1 << 40, 8, 1)),
    )
    write(
        "load_key",
        "regress-scrypt-huge-work",
        PASSWORD + hostile_pbes2_pem(scrypt_kdf(1 << 20, 8, 65535)),
    )
    write("load_key", "regress-pbkdf2-huge", PASSWORD + hostile_pbes2_pem(pbkdf2_kdf(2**31 - 1)))
    # Within the old 50 million bound, past the work bound (~2 s) of issue 10 finding 9.
    write(
        "load_key",
        "regress-pbkdf2-over-work-bound",
        PASSWORD + hostile_pbes2_pem(pbkdf2_kdf(10_000_001)),
    )
    scrypt_budget_seeds()
    public = key.public_key()
    spki = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write("load_key", "spki", PUBLIC + spki)
    write(
        "load_key",
        "pkcs1-public",
        PUBLIC + public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write("load_key", "ec-pkcs8", NO_PASSWORD + ec_key)


def tpm_seeds() -> None:
    """Real swtpm quotes, one per scheme the endpoint offers (needs swtpm and tpm2-pytss)."""
    import hashlib
    import struct

    from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter, supported_quote_schemes

    public_mode, attest_mode, signature_mode, verify_mode = b"\x00", b"\x01", b"\x02", b"\x03"
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti) as quoter:
        for scheme, hash_alg in supported_quote_schemes():
            block = quoter.quote("fuzz-seed", scheme=scheme, hash_alg=hash_alg)
            public, quote, signature = (
                base64.b64decode(block[field])
                for field in ("aik_pubkey_b64", "quote_b64", "signature_b64")
            )
            name = f"{scheme}-{hash_alg}"
            write("tpm_structures", f"public-{name}", public_mode + public)
            write("tpm_structures", f"attest-{name}", attest_mode + quote)
            write("tpm_structures", f"signature-{name}", signature_mode + signature)
            signed = quote[2:]  # TPM2B_ATTEST's content: the TPMS_ATTEST the TPM signed
            parts = b"".join(struct.pack(">H", len(p)) + p for p in (public, signature))
            write("tpm_structures", f"verify-{name}", verify_mode + parts + signed)
    # MakeCredential (mode 4): a TPM's EK, its persistent AIK's name, a 32-byte credential.
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti, aik="persistent") as persistent:
        ek, aik = persistent.ek_public(), persistent.aik_public()
    aik_name = b"\x00\x0b" + hashlib.sha256(aik[2:]).digest()
    parts = b"".join(struct.pack(">H", len(p)) + p for p in (ek, aik_name))
    write("tpm_structures", "make-credential-rsa-ek", b"\x04" + parts + b"c" * 32)


def request_body_seeds() -> None:
    """SDK-shaped request bodies (first byte: the cap, see the target), with the spellings the
    reader must handle: escapes, surrogate pairs, numbers, nesting, whitespace, stream."""
    sdk = json.dumps(
        {
            "messages": [{"role": "user", "content": 'Gr\u00fc\u00dfe \U0001f30d "q" \\ /'}],
            "model": "m",
            "temperature": 0.5,
            "n": 1,
            "stream": False,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    write("request_body", "sdk", b"\x00" + sdk)
    write("request_body", "sdk-capped", b"\x01" + sdk)
    spaced = b' {\n "model" : "m",\t"messages":[ ],"x":[1E+2,-0.0e-1,null,true,{}] } '
    write("request_body", "whitespace-numbers", b"\x00" + spaced)
    escaped = b'{"str\\u0065am":null,"a":"\\ud83c\\udf0d\\n\\u00e9","stream_options":null}'
    write("request_body", "escapes", b"\x00" + escaped)


def json_string_seeds() -> None:
    """String bodies (first byte 0: unescape) with every escape kind, surrogate pairs, lone and
    reversed surrogates, raw UTF-8 and invalid bytes; code points (first byte 1: escape; 3: escape,
    each code point's UTF-8 length picked by its top two bits)."""
    escaped = json.dumps("héllo wörld Ελ 漢 🔐 ")[1:-1].encode()
    escaped += b' \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t end" tail'
    write("json_string", "escaped", b"\x00h" + escaped[1:])
    lone = b'lone \\ud800 and reversed \\ude00\\ud83d and \\ud800\\u0041"'
    write("json_string", "surrogates", b"\x00" + lone)
    raw = "raw héllo 🔐 and bad ".encode() + b'\xed\xa0\x80 \xff"'
    write("json_string", "raw-utf8", b"\x00" + raw)
    codes = [ord(c) for c in 'héllo \x01"\\ Ελλάδα 漢字 🔐 plain ascii run here']
    codes += [0xD800, 0x41, 0x1F, 0x10FFFF]
    write("json_string", "code-points", b"\x01" + b"".join(c.to_bytes(3, "big") for c in codes))
    # First byte 3: each code point's UTF-8 length in its top two bits (0 ASCII .. 3 four
    # bytes), the rest taken modulo that length's range: blocks of 8 of every mix.
    widths = [0, 0, 1, 2, 3, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    bits = [(w << 22) | (0x1234 * (k + 1)) for k, w in enumerate(widths)]
    bits += [(2 << 22) | (0xD800 - 0x800), 0x22, 0x0A]  # a surrogate, a quote, a newline
    widths_seed = b"\x03" + b"".join(c.to_bytes(3, "big") for c in bits)
    write("json_string", "code-point-widths", widths_seed)


if __name__ == "__main__":
    json_string_seeds()
    request_body_seeds()
    envelope_seeds()
    key_seeds()
    tpm_seeds()
    print(f"seeds written to {SEEDS}")
