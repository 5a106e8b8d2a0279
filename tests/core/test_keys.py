"""Key handles of the native core, checked against pyca/cryptography and the reference client.

Key files we write must load in pyca/cryptography and files written by ``nomyo==0.2.9`` (and by
pyca/openssl in the other formats we accept) must load in the core. Every bad input gives its
own typed error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from tests.reference import run_reference

from nomyo_native import _core

PASSWORD = "correct horse battery"
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=SHA256()), algorithm=SHA256(), label=None)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def spki_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def keypair() -> _core.ClientKeyPair:
    return _core.ClientKeyPair.generate(2048)


@pytest.fixture(scope="module")
def pyca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def round_trips_with_pyca(kp: _core.ClientKeyPair, private: rsa.RSAPrivateKey) -> None:
    """What pyca encrypts to the key pair's public key, the core unwraps (via open())."""
    server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
    sealed = _core.seal({"ping": "pong"}, server)
    assert _core.open(sealed, kp)[0] == {"ping": "pong"}
    assert spki_fingerprint(private.public_key()) == kp.fingerprint


# ---- generation ------------------------------------------------------------------------------


def test_default_generation_is_4096_bits() -> None:
    kp = _core.ClientKeyPair.generate()
    assert kp.bits == 4096
    public = serialization.load_pem_public_key(kp.public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 4096
    assert public.public_numbers().e == 65537


@pytest.mark.parametrize("bits", [2048, 3072])
def test_generation_sizes(bits: int) -> None:
    kp = _core.ClientKeyPair.generate(bits)
    assert kp.bits == bits
    assert serialization.load_pem_public_key(kp.public_key_pem.encode()).key_size == bits


@pytest.mark.parametrize("bits", [0, 512, 1024, 2047, 2049, 4095, 8192, -2048, 10**40])
def test_generation_refuses_other_sizes(bits: int) -> None:
    with pytest.raises(ValueError, match="2048, 3072 or 4096"):
        _core.ClientKeyPair.generate(bits)


@pytest.mark.parametrize("bits", ["2048", 2048.0, True])
def test_generation_refuses_non_int(bits: object) -> None:
    with pytest.raises(TypeError):
        _core.ClientKeyPair.generate(bits)  # type: ignore[arg-type]


def test_two_keys_differ() -> None:
    a = _core.ClientKeyPair.generate(2048)
    b = _core.ClientKeyPair.generate(2048)
    assert a.fingerprint != b.fingerprint


def test_public_facts_match_pyca(keypair: _core.ClientKeyPair) -> None:
    pem = keypair.public_key_pem
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert pem.endswith("-----END PUBLIC KEY-----\n")
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert keypair.fingerprint == spki_fingerprint(public)
    assert keypair.bits == public.key_size == 2048
    assert "PRIVATE" not in repr(keypair)
    assert not hasattr(keypair, "private_key_pem")


# ---- saving ----------------------------------------------------------------------------------


def test_saved_files_load_in_pyca_and_back(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    priv, pub = tmp_path / "private_key.pem", tmp_path / "public_key.pem"
    keypair.save(priv, pub)
    assert mode_of(priv) == 0o600
    assert mode_of(pub) == 0o644
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert pub.read_text() == keypair.public_key_pem

    private = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert spki_fingerprint(private.public_key()) == keypair.fingerprint
    # The private key really is the pair of the public one: pyca decrypts what we wrap.
    wrapped = private.public_key().encrypt(b"k" * 32, OAEP)
    assert private.decrypt(wrapped, OAEP) == b"k" * 32

    loaded = _core.ClientKeyPair.load(str(priv))
    assert loaded.fingerprint == keypair.fingerprint
    round_trips_with_pyca(loaded, private)


@pytest.mark.parametrize("password", [PASSWORD, PASSWORD.encode(), "pässwörd-ünïcode"])
def test_encrypted_save_loads_in_pyca(
    keypair: _core.ClientKeyPair, tmp_path: Path, password: str | bytes
) -> None:
    priv, pub = tmp_path / "k" / "private_key.pem", tmp_path / "k" / "public_key.pem"
    keypair.save(priv, pub, password=password)
    text = priv.read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    raw = password.encode() if isinstance(password, str) else password
    private = serialization.load_pem_private_key(text, password=raw)
    assert spki_fingerprint(private.public_key()) == keypair.fingerprint
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(text, password=b"not the password")
    assert _core.ClientKeyPair.load(priv, password).fingerprint == keypair.fingerprint


def test_encrypted_save_uses_pbes2_pbkdf2_sha256_aes256(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    priv = tmp_path / "private_key.pem"
    keypair.save(priv, tmp_path / "public_key.pem", password=PASSWORD)
    dump = subprocess.run(
        [openssl, "asn1parse", "-in", str(priv)], capture_output=True, text=True, check=True
    ).stdout
    for name in ("PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"):
        assert name in dump
    assert ":0927C0" in dump  # 600000 PBKDF2 rounds


@pytest.mark.parametrize("password", ["", "short", "1234567", b"7bytes!"])
def test_short_password_refused_and_nothing_written(
    keypair: _core.ClientKeyPair, tmp_path: Path, password: str | bytes
) -> None:
    with pytest.raises(_core.KeyPasswordError, match="at least 8"):
        keypair.save(tmp_path / "p.pem", tmp_path / "q.pem", password=password)
    assert list(tmp_path.iterdir()) == []


def test_password_of_wrong_type(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="password"):
        keypair.save(tmp_path / "p.pem", tmp_path / "q.pem", password=12345678)  # type: ignore[arg-type]


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_modes_do_not_depend_on_umask(
    keypair: _core.ClientKeyPair, tmp_path: Path, umask: int
) -> None:
    old = os.umask(umask)
    try:
        keypair.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "private_key.pem") == 0o600
    assert mode_of(tmp_path / "public_key.pem") == 0o644


def test_save_replaces_atomically_and_leaves_no_temp_files(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    priv, pub = tmp_path / "private_key.pem", tmp_path / "public_key.pem"
    write_private(priv, b"old content", 0o600)
    pub.write_text("old public")
    inode_before = priv.stat().st_ino
    keypair.save(priv, pub)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private_key.pem", "public_key.pem"]
    assert priv.stat().st_ino != inode_before  # a new file was renamed over the old one
    assert _core.ClientKeyPair.load(priv).fingerprint == keypair.fingerprint


def test_save_creates_missing_folders_owner_only(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    folder = tmp_path / "a" / "client_keys"
    keypair.save(folder / "private_key.pem", folder / "public_key.pem")
    assert mode_of(folder) & 0o077 == 0
    assert mode_of(folder / "private_key.pem") == 0o600


def test_save_into_unwritable_folder_is_an_os_error(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        keypair.save(locked / "private_key.pem", locked / "public_key.pem")


# ---- loading foreign files -------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("password", [None, PASSWORD])
def test_reference_client_files_load(tmp_path: Path, password: str | None) -> None:
    # Written by the reference venv's nomyo; 2048 bits: its default is 4096, the format the same.
    job = {"key_dir": str(tmp_path), "password": password, "key_size": 2048}
    reference_pem = run_reference("generate-keys", job)["public_key_pem"]
    loaded = _core.ClientKeyPair.load(tmp_path / "private_key.pem", password)
    assert loaded.bits == 2048
    reference_public = serialization.load_pem_public_key(reference_pem.encode())
    assert loaded.fingerprint == spki_fingerprint(reference_public)
    # Our public PEM is the same SPKI the reference wrote.
    assert (
        serialization.load_pem_public_key(loaded.public_key_pem.encode()).public_numbers()
        == reference_public.public_numbers()
    )
    # And the loaded key really decrypts: the reference's private key is the peer.
    server = _core.ServerPublicKey.from_pem((tmp_path / "public_key.pem").read_bytes())
    assert _core.open(_core.seal({"a": [1, 2]}, server), loaded)[0] == {"a": [1, 2]}


def test_pkcs1_private_key_loads(pyca_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    pem = pyca_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    kp = _core.ClientKeyPair.load(write_private(tmp_path / "k.pem", pem))
    round_trips_with_pyca(kp, pyca_key)


def test_crlf_pem_loads(pyca_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    pem = pyca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kp = _core.ClientKeyPair.load(write_private(tmp_path / "k.pem", pem.replace(b"\n", b"\r\n")))
    assert kp.fingerprint == spki_fingerprint(pyca_key.public_key())


def test_scrypt_encrypted_pkcs8_loads(pyca_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    plain = tmp_path / "plain.pem"
    write_private(
        plain,
        pyca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    out = tmp_path / "scrypt.pem"
    subprocess.run(
        [openssl, "pkcs8", "-topk8", "-scrypt", "-in", str(plain), "-out", str(out),
         "-passout", f"pass:{PASSWORD}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    out.chmod(0o600)
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    kp = _core.ClientKeyPair.load(out, PASSWORD)
    assert kp.fingerprint == spki_fingerprint(pyca_key.public_key())
    with pytest.raises(_core.KeyPasswordError):
        _core.ClientKeyPair.load(out, "wrong password!")


# ---- load errors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_file(tmp_path_factory: pytest.TempPathFactory, keypair: _core.ClientKeyPair) -> Path:
    folder = tmp_path_factory.mktemp("enc")
    keypair.save(folder / "private_key.pem", folder / "public_key.pem", password=PASSWORD)
    return folder / "private_key.pem"


def test_wrong_password(encrypted_file: Path) -> None:
    for wrong in ["correct horse battery!", "x" * 8, b"\x00" * 8]:
        with pytest.raises(_core.KeyPasswordError, match="wrong password"):
            _core.ClientKeyPair.load(encrypted_file, wrong)


def test_missing_password(encrypted_file: Path) -> None:
    with pytest.raises(_core.KeyPasswordError, match="password is required"):
        _core.ClientKeyPair.load(encrypted_file)


def test_password_for_unencrypted_key(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    keypair.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    with pytest.raises(_core.KeyPasswordError, match="not encrypted"):
        _core.ClientKeyPair.load(tmp_path / "private_key.pem", PASSWORD)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a pem at all",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\xff\xfe\x00garbage",
    ],
)
def test_corrupt_pem(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(_core.KeyFormatError):
        _core.ClientKeyPair.load(write_private(tmp_path / "bad.pem", content))


def test_truncated_pem(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    keypair.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    lines = (tmp_path / "private_key.pem").read_bytes().splitlines(keepends=True)
    cut = b"".join(lines[:5] + lines[-1:])  # header, a few lines, footer: valid PEM, bad DER
    with pytest.raises(_core.KeyFormatError):
        _core.ClientKeyPair.load(write_private(tmp_path / "cut.pem", cut))


def test_legacy_encrypted_pem_names_the_fix(pyca_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    pem = pyca_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    with pytest.raises(_core.KeyFormatError, match="PKCS#8"):
        _core.ClientKeyPair.load(write_private(tmp_path / "legacy.pem", pem), PASSWORD)


def test_ec_private_key_is_not_rsa(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(_core.KeyFormatError, match="not an RSA key"):
        _core.ClientKeyPair.load(write_private(tmp_path / "ec.pem", pem))
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    with pytest.raises(_core.KeyFormatError, match="not an RSA key"):
        _core.ClientKeyPair.load(write_private(tmp_path / "ec-enc.pem", enc), PASSWORD)


@pytest.fixture(scope="module")
def short_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_1024_bit_private_key_is_refused(short_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    pem = short_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(_core.KeyFormatError, match="2048"):
        _core.ClientKeyPair.load(write_private(tmp_path / "short.pem", pem))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_private_key_readable_by_others_is_refused(
    keypair: _core.ClientKeyPair, tmp_path: Path, mode: int
) -> None:
    priv = tmp_path / "private_key.pem"
    keypair.save(priv, tmp_path / "public_key.pem")
    priv.chmod(mode)
    with pytest.raises(_core.KeyPermissionError) as info:
        _core.ClientKeyPair.load(priv)
    assert f"chmod 600 {priv}" in str(info.value)
    priv.chmod(0o400)  # owner read-only is fine
    assert _core.ClientKeyPair.load(priv).fingerprint == keypair.fingerprint


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _core.ClientKeyPair.load(tmp_path / "nope.pem")


def test_directory_is_not_a_key(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises((_core.KeyFormatError, IsADirectoryError)):
        _core.ClientKeyPair.load(folder)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = write_private(tmp_path / "big.pem", b"A" * (1024 * 1024 + 1))
    with pytest.raises(_core.KeyFormatError, match="too large"):
        _core.ClientKeyPair.load(big)


# ---- wipe ------------------------------------------------------------------------------------


def test_wipe_disposes_the_private_key(tmp_path: Path) -> None:
    kp = _core.ClientKeyPair.generate(2048)
    server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
    sealed = _core.seal({"x": 1}, server)
    assert not kp.wiped
    kp.wipe()
    assert kp.wiped
    with pytest.raises(_core.KeyDisposedError):
        _core.open(sealed, kp)
    with pytest.raises(_core.KeyDisposedError):
        kp.save(tmp_path / "p.pem", tmp_path / "q.pem")
    assert list(tmp_path.iterdir()) == []
    kp.wipe()  # idempotent
    assert kp.public_key_pem == server.pem  # the public half stays usable
    assert "wiped" in repr(kp)


# ---- server public keys ----------------------------------------------------------------------


def test_server_key_from_spki_pem(pyca_key: rsa.RSAPrivateKey) -> None:
    pem = pyca_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for given in (pem, pem.decode(), pem.replace(b"\n", b"\r\n"), b"\n  " + pem + b"\n\n"):
        key = _core.ServerPublicKey.from_pem(given)
        assert key.bits == 2048
        assert key.fingerprint == spki_fingerprint(pyca_key.public_key())
        assert key.pem == pem.decode()


def test_server_key_from_pkcs1_pem(pyca_key: rsa.RSAPrivateKey) -> None:
    pem = pyca_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    assert pem.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    key = _core.ServerPublicKey.from_pem(pem)
    assert key.fingerprint == spki_fingerprint(pyca_key.public_key())
    assert key.pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_server_key_refuses_short_ec_and_garbage(short_key: rsa.RSAPrivateKey) -> None:
    short = short_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(_core.KeyFormatError, match="2048"):
        _core.ServerPublicKey.from_pem(short)
    ec_pem = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(_core.KeyFormatError, match="not an RSA key"):
        _core.ServerPublicKey.from_pem(ec_pem)
    for garbage in ("", "hello", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"):
        with pytest.raises(_core.KeyFormatError):
            _core.ServerPublicKey.from_pem(garbage)
    with pytest.raises(TypeError):
        _core.ServerPublicKey.from_pem(12)  # type: ignore[arg-type]


def test_server_key_refuses_a_private_key_pem(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    keypair.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    with pytest.raises(_core.KeyFormatError, match="PUBLIC KEY"):
        _core.ServerPublicKey.from_pem((tmp_path / "private_key.pem").read_bytes())


def test_error_classes_share_the_core_base() -> None:
    for cls in (
        _core.KeyFormatError,
        _core.KeyPasswordError,
        _core.KeyPermissionError,
        _core.KeyDisposedError,
    ):
        assert issubclass(cls, _core.CoreError)


# ---- where the private key lives -------------------------------------------------------------

LOCKED_KEY_PROBE = """
import json, re
from nomyo_native import _core
from tests.reference import run_reference

def vmlck_kib():
    return int(re.search(r"VmLck:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

def locked_dump_excluded_kib():
    total, size, flags = 0, 0, ""
    for line in open("/proc/self/smaps"):
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("VmFlags:"):
            flags = line.split()[1:]
            if "lo" in flags and "dd" in flags:
                total += size
    return total

before = (vmlck_kib(), locked_dump_excluded_kib())
kp = _core.ClientKeyPair.generate(2048)
during = (vmlck_kib(), locked_dump_excluded_kib())
status = _core.memory_status()
print(json.dumps({"before": before, "during": during, "core_buffers": status["buffers_live"]}))
"""


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_private_key_lives_in_locked_dump_excluded_memory() -> None:
    # A fresh process: no LockedBuf is alive there, so any locked, dump-excluded memory that
    # appears with the key pair is aws-lc's own heap (the RSA numbers and their contexts).
    result = subprocess.run(
        [sys.executable, "-c", LOCKED_KEY_PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(result.stdout)
    assert r["core_buffers"] == 0
    assert r["during"][0] > r["before"][0], r
    assert r["during"][1] > r["before"][1], r


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "key.pem"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(_core.KeyFormatError, match="not a regular file"):
        _core.ClientKeyPair.load(fifo)


def test_save_refuses_one_path_for_both_keys(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    same = tmp_path / "key.pem"
    with pytest.raises(ValueError, match="differ"):
        keypair.save(same, same)
    assert not same.exists()


# ---- issue 10 finding 9: a hostile key file's KDF work is bounded, PBKDF2 as well as scrypt ----


def der(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def der_oid(dotted: str) -> bytes:
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return der(0x06, bytes(body))


def pbkdf2_key_file(path: Path, rounds: int, hmac_oid: str) -> Path:
    """An EncryptedPrivateKeyInfo (PBES2, PBKDF2 with `rounds`, AES-256-CBC) whose ciphertext
    is junk: a bounded reader refuses it before deriving anything."""
    seq = lambda *parts: der(0x30, b"".join(parts))  # noqa: E731
    pbkdf2 = seq(
        der_oid("1.2.840.113549.1.5.12"),
        seq(
            der(0x04, b"s" * 16),
            der(0x02, rounds.to_bytes((rounds.bit_length() + 8) // 8, "big")),
            seq(der_oid(hmac_oid), b"\x05\x00"),
        ),
    )
    aes = seq(der_oid("2.16.840.1.101.3.4.1.42"), der(0x04, b"i" * 16))
    info = seq(seq(der_oid("1.2.840.113549.1.5.13"), seq(pbkdf2, aes)), der(0x04, b"c" * 1232))
    text = base64.b64encode(info).decode()
    body = "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))
    pem = f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{body}-----END ENCRYPTED PRIVATE KEY-----\n"
    return write_private(path, pem.encode())


HMAC_SHA1, HMAC_SHA256 = "1.2.840.113549.2.7", "1.2.840.113549.2.9"
HMAC_SHA384, HMAC_SHA512 = "1.2.840.113549.2.10", "1.2.840.113549.2.11"


@pytest.mark.parametrize(
    ("hmac_oid", "rounds"),
    [
        (HMAC_SHA1, 10_000_001),
        (HMAC_SHA256, 10_000_001),
        (HMAC_SHA256, 49_999_999),
        (HMAC_SHA256, 2**31 - 1),
        (HMAC_SHA256, 2**32 - 1),
        (HMAC_SHA384, 5_000_001),
        (HMAC_SHA512, 5_000_001),
        (HMAC_SHA512, 40_000_000),
        (HMAC_SHA256, 0),
    ],
)
def test_finding9_pbkdf2_rounds_past_the_work_bound_are_refused_before_deriving(
    tmp_path: Path, hmac_oid: str, rounds: int
) -> None:
    # 50 million SHA-512 rounds took ~30 s: a hostile file could hang a load far past the
    # ~2 s scrypt's bounded work takes. Refused from the parameters, before any round runs.
    path = pbkdf2_key_file(tmp_path / "key.pem", rounds, hmac_oid)
    with pytest.raises(_core.KeyFormatError, match="PBKDF2 iteration count is invalid") as info:
        _core.ClientKeyPair.load(path, PASSWORD)
    assert PASSWORD not in str(info.value)


def test_finding9_pbkdf2_rounds_within_the_bound_are_derived(tmp_path: Path) -> None:
    # The same hand-built file with a modest count gets past the bound to the decryption,
    # which fails on its junk ciphertext as a wrong password would: the bound is what refused.
    for hmac_oid in (HMAC_SHA1, HMAC_SHA256, HMAC_SHA384, HMAC_SHA512):
        path = pbkdf2_key_file(tmp_path / "key.pem", 1000, hmac_oid)
        with pytest.raises(_core.KeyPasswordError):
            _core.ClientKeyPair.load(path, PASSWORD)
        path.unlink()
