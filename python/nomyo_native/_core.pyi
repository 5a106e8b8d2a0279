"""Type stubs for ``nomyo_native._core``, the Rust core.

Every operation that touches a secret happens here. Python only ever holds opaque handles
(``ClientKeyPair``, ``ServerPublicKey``) and ciphertext; no AES key, private-key byte, request
plaintext or raw response plaintext is ever returned as a Python object.

The test build (cargo feature ``testing``, ``make build-test``) adds a ``_testing`` submodule of
probes; it is never in a wheel. Its stub is ``tests/stubs/nomyo_native/_core/_testing.pyi``.
"""

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, final

# collections.abc.Buffer from 3.12; the stub-only typing_extensions name serves 3.11 too.
from typing_extensions import Buffer

# The core raises the package's own classes (nomyo_native.errors), under its historical names.
from nomyo_native.errors import CoreError as CoreError
from nomyo_native.errors import CryptoError as CryptoError
from nomyo_native.errors import EnvelopeError as EnvelopeError
from nomyo_native.errors import KeyDisposedError as KeyDisposedError
from nomyo_native.errors import KeyFormatError as KeyFormatError
from nomyo_native.errors import KeyPasswordError as KeyPasswordError
from nomyo_native.errors import KeyPermissionError as KeyPermissionError
from nomyo_native.errors import SizeLimitError
from nomyo_native.errors import TpmFormatError as TpmFormatError
from nomyo_native.types import CoreMemoryStatus

# PyO3 lists every name the module adds in __all__; stubtest keeps this list equal to it.
__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PLAINTEXT_BYTES",
    "MIN_RSA_BITS",
    "BufferLock",
    "ClientKeyPair",
    "CoreError",
    "CryptoError",
    "EnvelopeError",
    "KeyDisposedError",
    "KeyFormatError",
    "KeyPasswordError",
    "KeyPermissionError",
    "OpenedEnvelope",
    "PayloadTooLargeError",
    "RequestBody",
    "ServerPublicKey",
    "TlsCertificateError",
    "TlsConfig",
    "TlsError",
    "TlsSession",
    "TpmFormatError",
    "__version__",
    "decrypt_envelope",
    "memory_status",
    "open",
    "open_envelope",
    "seal",
    "tpm_make_credential",
    "tpm_parse_attest",
    "tpm_parse_public",
    "tpm_parse_signature",
    "tpm_verify_signature",
    "wipe",
    "x509_verify_signature",
]

PayloadTooLargeError = SizeLimitError
"""Either direction's size error: ``RequestTooLargeError`` (seal), ``ResponseTooLargeError``."""

__version__: str

MAX_PLAINTEXT_BYTES: Final[int]
"""Largest serialized request plaintext ``seal`` accepts: 10 MiB (10 * 1024 * 1024)."""
MAX_ENVELOPE_BYTES: Final[int]
"""Largest response body ``open_envelope`` parses (the base64 of MAX_PLAINTEXT_BYTES plus
framing)."""
MAX_JSON_DEPTH: Final[int]
"""Deepest nesting of lists/dicts that ``seal`` writes and ``open_envelope`` reads (128; the
outermost container is level 1)."""
MIN_RSA_BITS: Final[int]
"""2048: no shorter RSA key is generated, loaded or accepted from a server."""

# ---- keys -----------------------------------------------------------------------------------

@final
class ClientKeyPair:
    """The client's RSA key pair. The private key lives only in native locked memory."""

    @staticmethod
    def generate(bits: int | None = None) -> ClientKeyPair:
        """A fresh key pair of 2048, 3072 or 4096 bits (others raise ``ValueError``; None:
        4096).
        The GIL is released while the primes are searched."""
    @staticmethod
    def load(
        private_key_path: str | os.PathLike[str], password: str | bytes | None = None
    ) -> ClientKeyPair:
        """Load a PKCS#8 PEM private key (encrypted with PBES2 when ``password`` is given),
        also PKCS#1 ``RSA PRIVATE KEY`` PEM. The file must not be group/other accessible."""
    def save(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str],
        password: str | bytes | None = None,
    ) -> None:
        """Write the private key (PKCS#8 PEM, PBES2-encrypted when ``password`` is given, mode
        0600 from its first byte, atomically) and the public key (SPKI PEM, mode 0644)."""
    @property
    def public_key_pem(self) -> str:
        """SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``)."""
    @property
    def fingerprint(self) -> str:
        """``"sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))``."""
    @property
    def bits(self) -> int: ...
    @property
    def wiped(self) -> bool: ...
    def wipe(self) -> None:
        """Free and zero the private key now; later use raises ``KeyDisposedError``."""

@final
class ServerPublicKey:
    """A server's RSA public key (>= MIN_RSA_BITS), used to wrap request keys."""

    @staticmethod
    def from_pem(pem: str | bytes) -> ServerPublicKey:
        """Parse SubjectPublicKeyInfo PEM (PKCS#1 ``RSA PUBLIC KEY`` PEM also accepted)."""
    @property
    def pem(self) -> str: ...
    @property
    def fingerprint(self) -> str:
        """``"sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))``."""
    @property
    def bits(self) -> int: ...

# ---- envelope -------------------------------------------------------------------------------

def seal(payload: Any, server_key: ServerPublicKey) -> bytes:
    """Serialize ``payload`` (dict/list/str/int/float/bool/None; tuples as lists) to JSON in
    locked memory and encrypt it as a PROTOCOL.md section 2 envelope; returns the envelope's
    UTF-8 JSON. Raises ``TypeError`` naming the type and path of a non-JSON value,
    ``ValueError`` for NaN/Infinity, lone surrogates, nesting deeper than MAX_JSON_DEPTH or a
    dict resized while it is written (by code the collector ran meanwhile),
    ``TypeError`` for dict keys other than str/int/float/bool/None, ``RequestTooLargeError`` (a
    ``PayloadTooLargeError``) over MAX_PLAINTEXT_BYTES (before any encryption)."""

def open_envelope(
    body: bytes | bytearray | memoryview, keypair: ClientKeyPair
) -> tuple[Any, int | float | None, str]:
    """Check, unwrap and decrypt a response envelope; build the Python objects straight from
    locked memory. ``body`` is read in place: ``bytes``, or a C-contiguous buffer of unsigned
    bytes (a ``bytearray``, a ``memoryview``), which must not be written to during the call
    (the GIL is released; a ``bytearray`` cannot be resized meanwhile); anything else is a
    ``TypeError``. Returns ``(payload, processed_at, algorithm)``. Raises ``EnvelopeError``
    (format, naming the field), ``ResponseTooLargeError`` over MAX_ENVELOPE_BYTES (both are
    ``ResponseFormatError``), ``CryptoError`` (opaque) or ``KeyDisposedError``."""

open = open_envelope
"""The historical name of ``open_envelope`` (it shadows the builtin)."""

def decrypt_envelope(
    body: bytes | bytearray | memoryview, keypair: ClientKeyPair, cost_limit: int
) -> OpenedEnvelope:
    """``open_envelope``'s first half: check, unwrap and decrypt a response envelope (``body``
    read as ``open_envelope`` reads it), and count the plaintext's ``build_cost`` up to
    ``cost_limit``; the plaintext stays in locked memory. Raises as ``open_envelope`` does."""

@final
class OpenedEnvelope:
    """A decrypted response envelope (``decrypt_envelope``) whose payload is not built yet: the
    plaintext stays in locked memory until ``build`` (once) or until the object goes (wiped
    either way). Not copyable or picklable."""

    @property
    def plaintext_bytes(self) -> int:
        """Bytes of the plaintext JSON."""

    @property
    def build_cost(self) -> int:
        """A bound on the build's work beyond copying strings: one per ``[``, ``{``, ``,``,
        ``:`` and backslash of the plaintext, eight per 8-byte word of digits at an offset
        that is a multiple of 8 (a long number's; strings' bytes count too), plus one; counted
        up to ``decrypt_envelope``'s ``cost_limit``, so a figure above it says only "more"."""

    @property
    def structure_cost(self) -> int:
        """``build_cost`` without the backslashes: the build's work beyond its strings, counted
        the same way, up to the same limit (``build_cost`` itself when that is within it)."""

    def build(self) -> tuple[Any, int | float | None, str]:
        """``open_envelope``'s second half: the payload's objects built from the plaintext,
        which is then wiped; ``(payload, processed_at, algorithm)``. Raises ``EnvelopeError``
        for a malformed plaintext (the plaintext wiped too), ``ValueError`` when called again
        after either."""

    def build_within(self, seconds: float) -> tuple[Any, int | float | None, str] | None:
        """``build`` if it ends within ``seconds``, else ``None``: the clock is looked at as
        the build goes (every 64 KiB of plaintext, inside long strings), a long string whose
        worst case does not fit in the time left is not begun, and on giving up what was built
        is dropped and the plaintext, untouched, is kept for ``build``. Raises as ``build``
        does, and ``ValueError`` for a negative or non-finite ``seconds``."""

@final
class RequestBody:
    """An openai SDK's serialized chat-completion request (immutable ``bytes``, never written
    to), checked and compacted straight into locked memory: whitespace outside strings goes,
    strings and numbers are kept as written (RFC 8259 checked; lone surrogate escapes, numbers
    beyond the double range and integers of more than 4300 digits refused, as json.loads
    refuses them), so an SDK-written body becomes exactly what
    ``seal`` writes for the same dict. Refuses a body that is not a non-empty object, a
    top-level ``stream`` other than false/null and ``stream_options`` other than null
    (``ValueError``; nothing is stripped), nesting deeper than MAX_JSON_DEPTH, and a result
    over MAX_PLAINTEXT_BYTES (``RequestTooLargeError``). Errors name the rule and the byte
    offset, never content."""

    def __new__(cls, body: bytes) -> RequestBody: ...
    @property
    def size(self) -> int:
        """Bytes of the compacted plaintext."""
    @property
    def consumed(self) -> bool:
        """True once sealed or wiped."""
    def seal(self, server_key: ServerPublicKey) -> bytes:
        """Encrypt the plaintext in place as a PROTOCOL.md section 2 envelope (the same as
        ``seal``), then wipe it. Once only: a second call raises ``ValueError``."""
    def wipe(self) -> None:
        """Drop and zero the plaintext without sealing it."""

# ---- memory ---------------------------------------------------------------------------------

def memory_status() -> CoreMemoryStatus:
    """Process-wide status of the core's locked memory::

    {"method": "mlock" | "zero-only", "platform": "linux" | "darwin" | "windows" | ...,
     "bytes_locked": int,        # whole pages locked right now: buffers (pool included),
                                 # BufferLocks and aws-lc's heap
     "bytes_unlocked": int,      # bytes holding secrets that are NOT locked right now
                                 # (wipe-only buffers, aws-lc heap past the limit, fork child)
     "buffers_live": int,        # LockedBufs in use right now (pooled ones not counted)
     "bytes_pooled": int,        # of bytes_locked: wiped buffers kept for reuse
     "pool_limit_bytes": int,    # most the pool keeps: min(12 MiB, RLIMIT_MEMLOCK / 2),
                                 # 12 MiB where the limit does not bind (CAP_IPC_LOCK)
     "lock_failures": int,       # buffers, BufferLocks and aws-lc heap pages left unlocked
     "dump_exclusion": bool,     # MADV_DONTDUMP applied (Linux)
     "guard_pages": bool, "lock_limit_bytes": int | None,
     "aws_lc_heap": {"installed": bool, "bytes_locked": int, "bytes_unlocked": int,
                     "small_blocks_unlocked": int,  # of bytes_unlocked: pages of blocks up
                                                    # to 32 KiB (the private key's numbers)
                     "lock_failures": int}}   # where aws-lc keeps keys, contexts, RNG state

    ``method`` is the outcome of the most recent lock attempt (a one-byte probe buffer is
    allocated when none was made yet); ``lock_limit_bytes`` is the RLIMIT_MEMLOCK soft limit
    (None when unlimited or not applicable).

    Dropped locked buffers of one page to 16 MiB are wiped and kept mapped, locked, guarded and
    dump-excluded for reuse (at most two per power-of-two size class, at most
    ``pool_limit_bytes``); an allocation whose lock fails empties the pool first. A fork child
    drops the pool it inherits (its copies are not locked) and counts the buffers it inherited as
    unlocked; it locks aws-lc's heap again on its first use of the core or of this call.
    """

@final
class BufferLock:
    """A caller's writable buffer (bytearray, memoryview, ...) locked in RAM (mlock) and
    excluded from core dumps until ``release()``; ``wipe()`` zeroes it. As a context manager
    it wipes and releases on exit, also on exceptions. While held, the buffer cannot be
    resized (it is exported)."""

    def __new__(cls, buffer: Any) -> BufferLock: ...
    @property
    def locked(self) -> bool:
        """True when mlock succeeded (False: wipe-only)."""
    @property
    def size(self) -> int: ...
    def wipe(self) -> None: ...
    def release(self) -> None:
        """munlock and drop the export (does not wipe)."""
    def __enter__(self) -> BufferLock: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool: ...

def wipe(buffer: Any) -> None:
    """Zero a writable buffer in a way the optimizer keeps."""

# ---- TPM structures (rust/src/tpm): bounded parsers and the quote-signature verifier --------

def tpm_parse_public(data: bytes) -> dict[str, Any]:
    """Parse a marshalled TPM2B_PUBLIC: ``public_area`` (the TPMT_PUBLIC bytes), ``type``,
    ``name_alg``, ``object_attributes``, ``auth_policy``, the type's parameters (``symmetric``,
    ``scheme``, ``key_bits``/``exponent``/``unique`` or ``curve``/``kdf``/``x``/``y``) and
    ``spki_der`` (the DER SubjectPublicKeyInfo of an RSA >= 2048 or P-256/P-384 key, else None)."""

def tpm_parse_attest(data: bytes) -> dict[str, Any]:
    """Parse a marshalled TPM2B_ATTEST holding a quote or a certify structure: ``attest`` (the
    signed TPMS_ATTEST bytes), ``magic``, ``type``, ``qualified_signer``, ``extra_data``, the
    clock fields, ``firmware_version``, then ``pcr_select`` (list of (hash, bitmap)) and
    ``pcr_digest`` for a quote or ``name`` and ``qualified_name`` for a certify."""

def tpm_parse_signature(data: bytes) -> dict[str, Any]:
    """Parse a marshalled TPMT_SIGNATURE: ``sig_alg`` and, by its shape, ``hash`` with ``sig``
    (RSA), ``r``/``s`` (ECC) or ``digest`` (HMAC)."""

def tpm_verify_signature(public: bytes, signature: bytes, message: bytes) -> str:
    """Verify ``signature`` (TPMT_SIGNATURE) by the restricted signing key ``public``
    (TPM2B_PUBLIC) over ``message``: RSASSA, RSA-PSS (salt of the digest length or the
    maximum) or ECDSA on P-256/P-384, with SHA-256/384/512. Returns what verified."""

def tpm_make_credential(ek_public: bytes, name: bytes, credential: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential in software: seal ``credential`` for the object named ``name``
    (nameAlg || digest of its public area) under the RSA endorsement key ``ek_public``
    (TPM2B_PUBLIC). Returns the marshalled (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)."""

def x509_verify_signature(
    algorithm: str, public_key: bytes, message: bytes, signature: bytes
) -> bool:
    """Verify an X.509 certificate signature: ``algorithm`` is ``rsa-pkcs1-sha256/384/512`` or
    ``ecdsa-p256-sha256/384``/``ecdsa-p384-sha256/384``; ``public_key`` a PKCS#1 RSAPublicKey
    or an uncompressed EC point. Raises TpmFormatError for an unsupported algorithm."""

# ---- TLS records (rust/src/tls.rs): rustls on aws-lc-rs, sans I/O -----------------------------

class TlsError(Exception):
    """A TLS failure (handshake, protocol, alert, bad record). The message is rustls's, never
    key material or plaintext."""

class TlsCertificateError(TlsError):
    """The server's certificate was refused."""

    reason: str
    """A short stable code: ``UnknownIssuer``, ``NotValidForName``, ``Expired``,
    ``NotValidYet``, ``BadSignature``, ``BadEncoding``, ``Revoked``, ``InvalidPurpose``,
    ``UnsupportedSignatureAlgorithm``, ``UnhandledCriticalExtension``, ``Other``..."""

@final
class TlsConfig:
    """Trust anchors and protocol settings of one client, shared by its sessions (and their
    session-resumption cache). Build once per trust store: parsing costs milliseconds.

    rustls's safe defaults on aws-lc-rs: TLS 1.3 and 1.2, its cipher suites and key exchange
    groups (the post-quantum hybrid first), no 0-RTT, no key log."""

    def __new__(cls, roots_pem: Buffer, alpn: Sequence[bytes] | None = None) -> TlsConfig:
        """Every PEM CERTIFICATE block in ``roots_pem`` becomes a trust anchor (as OpenSSL's
        ``load_verify_locations``); other blocks are ignored, unusable ones skipped.
        ``alpn`` defaults to ``(b"http/1.1",)``. ValueError if no anchor is usable."""
    @property
    def root_count(self) -> int:
        """The trust anchors in use."""

@final
class TlsSession:
    """One client connection's TLS record layer, sans I/O: the caller moves the socket's bytes
    in (``receive``) and out (``take_tls``), and application data in (``send``) and out
    (``read_into``). The ClientHello is waiting in ``take_tls()`` at once. Once failed, every
    later ``receive``/``send`` raises the same kind of error; ``read_into`` still hands over
    the plaintext of records authenticated before the failure, then raises it too.

    One call at a time: a call made while another thread's ``receive``/``send`` runs (with the
    GIL released) raises RuntimeError (already borrowed) and changes nothing."""

    def __new__(cls, config: TlsConfig, server_name: str) -> TlsSession:
        """``server_name``: a DNS name or an IP literal, checked against the certificate
        (ValueError if it is neither)."""
    def receive(self, data: Buffer) -> int:
        """Take TLS bytes read from the socket (any amount, all taken), processing every
        complete record; returns the plaintext bytes now waiting. Replies and alerts are then
        waiting in ``take_tls()``. Raises TlsError / TlsCertificateError."""
    def receive_into(self, data: Buffer, buffer: Buffer) -> int:
        """``receive``, with the plaintext moved into the writable ``buffer`` as the records
        are decrypted (what was waiting first); returns the bytes written there, the rest
        waits for ``read_into``. ValueError if the two share memory. A TlsError raised here
        has ``written``: the bytes written into ``buffer`` before the failure (authentic)."""
    def read_into(self, buffer: Buffer) -> int:
        """Move waiting plaintext into the writable ``buffer``; returns the bytes written.
        After a failure: what was authenticated before it, then the failure."""
    @property
    def plaintext_pending(self) -> int:
        """Plaintext bytes waiting for ``read_into``."""
    def send(self, data: Buffer) -> None:
        """Encrypt application data into the TLS output (TlsError before the handshake ends
        or after ``close``)."""
    def take_tls(self) -> bytes:
        """The TLS bytes to write now (``b""`` if none)."""
    @property
    def tls_pending(self) -> int:
        """Bytes ``take_tls()`` would return."""
    def close(self) -> None:
        """Queue close_notify (idempotent)."""
    @property
    def handshaking(self) -> bool:
        """The handshake is still under way."""
    @property
    def peer_closed(self) -> bool:
        """The peer's close_notify was received."""
    @property
    def record_layer(self) -> str:
        """Whose record layer carries the records: ``"rustls"`` (the handshake, the first
        answer, TLS 1.2, a server that updated its keys) or ``"core"`` (the core's own TLS 1.3
        records after the first answer, decrypted straight into the caller's buffer)."""
    @property
    def protocol_version(self) -> str | None:
        """``"TLSv1.3"`` or ``"TLSv1.2"`` (as ``ssl.SSLObject.version()``)."""
    @property
    def cipher_suite(self) -> str | None:
        """The negotiated suite's IANA name, e.g. ``"TLS13_AES_256_GCM_SHA384"``."""
    @property
    def cipher_bits(self) -> int | None:
        """The secret bits of the negotiated bulk cipher (``ssl.SSLObject.cipher()[2]``)."""
    @property
    def alpn_protocol(self) -> str | None:
        """The protocol the server chose by ALPN."""
    def peer_certificate(self) -> bytes | None:
        """The server's leaf certificate, DER."""
