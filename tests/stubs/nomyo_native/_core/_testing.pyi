"""Type stub for ``nomyo_native._core._testing``: probes for the test suite.

Exists only in the test build of the core (cargo feature ``testing``, built by
``make build-test`` into ``target/testing``); the release module and every wheel lack it.
"""

from typing import Any, final

# PyO3 lists every name the module adds in __all__; stubtest keeps this list equal to it.
__all__ = [
    "LockedProbe",
    "json_digest",
    "json_loads",
    "json_roundtrip",
    "keep_rustls_records",
    "last_in_place_cut",
    "locked_memory_initialised",
    "panic_with",
    "plaintext_copies_bounced",
    "probe_overflow",
    "release_pool",
    "str_from_kind_and_data",
    "str_written_in_place",
    "strs_written_in_place",
    "tls_sessions_taken_over",
    "use_stable_str_constructors",
]

def locked_memory_initialised() -> bool:
    """True when locked memory's one-time set-up has run (importing ``_core`` does it)."""

def panic_with(message: str) -> None:
    """Panic inside the core's panic guard with ``message`` as the panic's message: raises
    ``CryptoError`` (opaque); stderr says where the panic was, never ``message``."""

def release_pool() -> int:
    """Free the wiped buffers the core keeps for reuse; returns the bytes released."""

@final
class LockedProbe:
    """A LockedBuf of ``size`` bytes filled with a pattern derived from ``seed`` inside the
    core (so the pattern never exists as a Python object). For tests of locking, dump
    exclusion and wiping."""

    def __new__(cls, size: int, seed: int) -> LockedProbe: ...
    @property
    def address(self) -> int:
        """Address of the first byte of the buffer's data."""
    @property
    def size(self) -> int: ...
    @property
    def locked(self) -> bool: ...
    def pattern_digest(self) -> str:
        """hex SHA-256 of the buffer's current content."""
    def release(self) -> None:
        """Drop (wipe and free) the LockedBuf now."""

def probe_overflow(size: int, past_end: int) -> None:
    """Allocate a LockedBuf and write ``past_end`` bytes beyond its end. Must crash the
    process (guard page / canary); call only in a subprocess."""

def json_roundtrip(obj: Any, max_len: int | None = None) -> Any:
    """Serialize ``obj`` into locked memory exactly as ``seal`` does (cap ``max_len``, default
    MAX_PLAINTEXT_BYTES) and parse it back with the reader ``open`` uses."""

def json_digest(obj: Any, max_len: int | None = None) -> tuple[str, int]:
    """(hex SHA-256, length) of the JSON ``seal`` would encrypt for ``obj``: the bytes equal
    ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``."""

def json_loads(data: bytes) -> Any:
    """Parse ``data`` with the strict reader ``open`` uses (raises ``EnvelopeError``)."""

def use_stable_str_constructors(only: bool) -> None:
    """Build every ``str`` the reader makes with the stable ABI's constructors (``True``), or
    with ``PyUnicode_FromKindAndData`` and in place where they are found in the interpreter
    (``False``, the default)."""

def str_from_kind_and_data() -> bool:
    """Whether the reader builds ``str``s with ``PyUnicode_FromKindAndData`` now."""

def str_written_in_place() -> bool:
    """Whether the reader may decode a long string beyond the BMP straight into its ``str``
    now (``PyUnicode_New`` found and the interpreter's layout shown by a probe)."""

def strs_written_in_place() -> int:
    """How many ``str``s the reader has finished in place (the layout probe's own included)."""

def plaintext_copies_bounced() -> int:
    """How many record copies ``TlsSession`` made into callers' buffers through its scratch,
    out of the page offsets where a straight copy runs at a twentieth of its speed."""

def keep_rustls_records(keep: bool) -> bool:
    """Keep rustls's record layer for every session made from now on (``True``), or let the
    core's take TLS 1.3 sessions over after their first answer (``False``, the default);
    returns the previous setting."""

def tls_sessions_taken_over() -> int:
    """How many sessions the core's own TLS 1.3 record layer took over from rustls."""

def last_in_place_cut() -> int:
    """How many code points the last ``str`` finished in place was cut by (its room less its
    length)."""
