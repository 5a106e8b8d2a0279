"""A client's options, checked once at construction: the base URL, timeouts and the deadline,
retry tuning. Nothing here does I/O; what is refused is refused before any prompt is sealed."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nomyo_native._constants import (
    DEFAULT_KEY_ROTATION_INTERVAL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_ROUTER_URL,
    DEFAULT_TIMEOUT,
)

if TYPE_CHECKING:
    import ssl

    import httpx2

__all__ = [
    "DEFAULT_KEY_ROTATION_INTERVAL",
    "DEFAULT_TIMEOUT",
    "FROM_TIMEOUT",
    "ClientOptions",
    "Completed",
    "RouterURL",
    "attempt_deadline",
]

T = TypeVar("T")


class _Unset:
    """The default of ``deadline=``: distinguishes "not given" from an explicit ``None``."""

    def __repr__(self) -> str:
        return "<from timeout>"


FROM_TIMEOUT: Any = _Unset()


@dataclass(frozen=True)
class ClientOptions:
    """Every constructor argument of a client, as given (see ``SecureCompletionClient``)."""

    router_url: str = DEFAULT_ROUTER_URL
    allow_http: bool = False
    secure_memory: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES
    api_key: str | None = None
    timeout: float | httpx2.Timeout | None = DEFAULT_TIMEOUT
    deadline: float | None = FROM_TIMEOUT
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True
    ca_bundle: str | os.PathLike[str] | None = None
    server_key_fingerprint: str | None = None
    server_key_pin_file: str | os.PathLike[str] | None = None
    key_size: int = 4096
    key_dir: str | os.PathLike[str] | None = None
    key_password: str | None = None
    key_rotation_interval: float = DEFAULT_KEY_ROTATION_INTERVAL
    key_rotation_dir: str | os.PathLike[str] | None = None
    key_rotation_password: str | None = None
    attestation: str | None = None
    pcr_baseline: dict[str, Any] | str | os.PathLike[str] | None = None
    trusted_aik: Any = None
    aik_pin_file: str | os.PathLike[str] | None = None
    retry_backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    require_payload_echo: bool = False
    transport: Any = None
    sleep: Callable[[float], Awaitable[None] | None] | None = None
    clock: Callable[[], float] = time.monotonic
    background_keygen: bool | None = None
    crypto_on_loop: bool = True
    _keyring: Any = None

    def check_numbers(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        for name in ("retry_backoff", "max_backoff", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not isinstance(self.crypto_on_loop, bool):
            raise TypeError("crypto_on_loop must be True or False")


@dataclass(frozen=True, slots=True)
class RouterURL:
    """The base URL: as given (no trailing slash), as shown (no credentials), as requested
    (no userinfo: httpx2 logs request URLs in full), with its credentials kept apart."""

    url: str
    shown: str
    request_url: str
    auth: httpx2.BasicAuth | None
    secrets: tuple[str, ...]
    https: bool


def attempt_deadline(timeout: float | httpx2.Timeout | None, deadline: Any) -> float | None:
    """How long one attempt (send, wait, read the whole body) may take in all.

    httpx2's timeouts bound each operation (connect, every read), so a peer trickling a byte at
    a time could hold a request for ever. An explicit ``deadline`` wins; otherwise a numeric
    ``timeout`` is the deadline, and an ``httpx2.Timeout`` gives the sum of its finite connect,
    write and read timeouts (a pool wait happens before anything is sent). There is no
    deadline only when the caller says so: ``deadline=None`` with ``timeout=None``.
    """
    if deadline is not FROM_TIMEOUT and deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise ValueError("deadline must be a number of seconds > 0, or None")
        if not (0 < deadline < math.inf):
            raise ValueError("deadline must be a number of seconds > 0, or None")
        return float(deadline)
    if timeout is None:
        return None if deadline is None else DEFAULT_TIMEOUT
    # An httpx2.Timeout exists only once httpx2 is imported (by a driver): the options are
    # checked without importing the HTTP stack.
    httpx2_module = sys.modules.get("httpx2")
    if httpx2_module is not None and isinstance(timeout, httpx2_module.Timeout):
        finite = [
            float(part)
            for part in (timeout.connect, timeout.write, timeout.read)
            if part is not None and 0 < part < math.inf
        ]
        return sum(finite) if finite else DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number of seconds, an httpx2.Timeout, or None")
    if not (0 < timeout < math.inf):
        raise ValueError("timeout must be a number of seconds > 0, or None")
    return float(timeout)


class Completed(Generic[T]):
    """A result that is already there, and also awaitable.

    nomyo 0.2.9 defines ``generate_keys``/``load_keys`` synchronous while its guides ``await``
    them; returning this makes both spellings work.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        yield from ()
        return self._value

    def result(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return f"<completed {self._value!r}>"
