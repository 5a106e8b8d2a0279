"""SecureCompletionClient: transport, retries, server-key cache and pinning, key lifecycle.

Same public API as nomyo 0.2.9's ``SecureCompletionClient``; every secret operation (keygen,
seal, open) is a call into the Rust core, run off the event loop thread (the core releases the
GIL). Python only ever holds key handles, the envelope ciphertext and the final response dict.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import os
import random
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx2

from nomyo_native import _core
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._binding import CLIENT_METADATA_KEYS, echo_matches, enforce_binding
from nomyo_native._headers import validate_api_key, validate_payload_id
from nomyo_native._hints import option
from nomyo_native._http_body import (
    IDENTITY_ENCODING,
    read_raw_capped,
    refuse_encoded,
    refused_codings,
)
from nomyo_native._pinfile import PinFile, normalize_fingerprint, normalize_origin
from nomyo_native._retry import (
    RETRYABLE_STATUS_CODES,
    is_permanent_tpm_refusal,
    tls_verification_failure,
)
from nomyo_native._urls import redact_url, split_credentials
from nomyo_native.attestation import (
    ATTESTATION_POLICIES,
    apply_attestation_policy,
    prepare_baseline,
    resolve_policy,
    validate_trusted_aik,
)
from nomyo_native.enrollment import enrolled_aik
from nomyo_native.errors import (
    OPAQUE_CRYPTO_MESSAGE,
    APIConnectionError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    ForbiddenError,
    InsecureKeyFileError,
    InvalidRequestError,
    KeyLoadError,
    PayloadTooLargeError,
    RateLimitError,
    ResponseFormatError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)
from nomyo_native.keyring import KeyRing

__all__ = [
    "ATTESTATION_POLICIES",
    "DEFAULT_KEY_ROTATION_INTERVAL",
    "RETRYABLE_STATUS_CODES",
    "VALID_SECURITY_TIERS",
    "SecureCompletionClient",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

VALID_SECURITY_TIERS = ("standard", "high", "maximum")
DEFAULT_KEY_ROTATION_INTERVAL = 24 * 3600.0
DEFAULT_TIMEOUT = 900.0
PUBLIC_KEY_PATH = "/pki/public_key"
COMPLETION_PATH = "/v1/chat/secure_completion"
# Error bodies and the server key are small; a response envelope is capped by the core.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_PUBLIC_KEY_BYTES = 64 * 1024
# The attestation record under attestation="off": the client's own, so that a verdict the
# server wrote into _metadata never survives.
_NOT_CHECKED: dict[str, Any] = {
    "verified": False,
    "bound": False,
    "hardware_rooted": False,
    "level": "none",
    "available": None,
    "summary": "not checked: attestation='off'",
    "reason": "attestation policy 'off'",
}


def _enrolled_aik(pin_file: str | os.PathLike[str], router_url: str, trusted_aik: Any) -> str:
    """The attestation key enrolled for ``router_url``: refused now (before any prompt is
    sent) when the server is not enrolled or a different ``trusted_aik`` was also given."""
    enrolled = enrolled_aik(pin_file, router_url)
    if enrolled is None:
        shown = redact_url(router_url)
        raise ValueError(
            f"{shown} has no attestation key enrolled in {pin_file}: run "
            f"'nomyo-native attest enroll {shown} --pin-file {pin_file}' first"
        )
    if trusted_aik is not None:
        if isinstance(trusted_aik, bytes):
            trusted_aik = trusted_aik.decode("ascii", "replace")
        if str(trusted_aik).strip().lower() != enrolled:
            raise ValueError(
                "trusted_aik differs from the attestation key enrolled in aik_pin_file"
            )
    return enrolled


def _re_enroll_hint(pin_file: str | os.PathLike[str], router_url: str) -> str:
    """Said when a quote's key is not the one enrolled: a TPM reset or replacement changes it."""
    origin = normalize_origin(router_url)
    return (
        f"The attestation key enrolled for {origin} in {pin_file} did not sign this quote (the "
        f"server's TPM was reset or replaced, or someone is in the middle). If the change is "
        f"expected, remove the line for {origin} from {pin_file} and run 'nomyo-native attest "
        f"enroll {origin} --pin-file {pin_file}' again."
    )


class _Completed(Generic[T]):
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


@dataclass
class _LoopState:
    """Per-event-loop resources: httpx2 connections and asyncio locks belong to one loop."""

    http: httpx2.AsyncClient
    server_key_lock: asyncio.Lock


def validate_security_tier(security_tier: str | None) -> str | None:
    if security_tier is None:
        return None
    if security_tier not in VALID_SECURITY_TIERS:
        raise ValueError(
            f"Invalid security_tier: {security_tier!r}. "
            f"Must be one of: {', '.join(VALID_SECURITY_TIERS)}"
        )
    return security_tier


def validate_attestation_policy(policy: str) -> str:
    if policy not in ATTESTATION_POLICIES:
        raise ValueError(
            f"Invalid attestation policy: {policy!r}. "
            f"Must be one of: {', '.join(ATTESTATION_POLICIES)}"
        )
    return policy


def _tls_context(
    verify: bool | str | os.PathLike[str] | ssl.SSLContext,
    ca_bundle: str | os.PathLike[str] | None,
) -> ssl.SSLContext:
    """One verifying SSLContext per client (building one costs milliseconds)."""
    if verify is False:
        raise SecurityError(
            "TLS certificate verification cannot be disabled: the server key fetched over this "
            "connection is the trust anchor. Pass ca_bundle= with your CA instead."
        )
    if isinstance(verify, ssl.SSLContext):
        if verify.verify_mode != ssl.CERT_REQUIRED or not verify.check_hostname:
            raise SecurityError(
                "the SSLContext passed as verify= must require certificates and check hostnames"
            )
        return verify
    cafile = ca_bundle if ca_bundle is not None else (None if verify is True else verify)
    if cafile is not None:
        if not os.path.exists(cafile):
            raise FileNotFoundError(f"CA bundle not found: {os.fspath(cafile)}")
        return ssl.create_default_context(cafile=os.fspath(cafile))
    return _default_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _default_tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx2's default trust store (SSL_CERT_FILE or SSL_CERT_DIR, else the OS store), built
    once per process: loading a CA bundle costs tens of milliseconds, and contexts are shareable."""
    del cert_file, cert_dir  # the cache key: httpx2 reads the same variables
    return httpx2.create_ssl_context()


def _key_password(*preferred: str | None) -> str | None:
    """The first non-empty of ``preferred``, else ``NOMYO_KEY_PASSWORD``. An empty string means
    "not given" everywhere (as an empty environment variable always did)."""
    for candidate in preferred:
        if candidate:
            return candidate
    return os.environ.get("NOMYO_KEY_PASSWORD") or None


class _Unset:
    """The default of ``deadline=``: distinguishes "not given" from an explicit ``None``."""

    def __repr__(self) -> str:
        return "<from timeout>"


_FROM_TIMEOUT: Any = _Unset()


def _attempt_deadline(timeout: float | httpx2.Timeout | None, deadline: Any) -> float | None:
    """How long one attempt (send, wait, read the whole body) may take in all.

    httpx2's timeouts bound each operation (connect, every read), so a peer trickling a byte at
    a time could hold a request for ever. An explicit ``deadline`` wins; otherwise a numeric
    ``timeout`` is the deadline, and an ``httpx2.Timeout`` gives the sum of its finite connect,
    write and read timeouts (a pool wait happens before anything is sent). There is no
    deadline only when the caller says so: ``deadline=None`` with ``timeout=None``.
    """
    if deadline is not _FROM_TIMEOUT and deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise ValueError("deadline must be a number of seconds > 0, or None")
        if not (0 < deadline < math.inf):
            raise ValueError("deadline must be a number of seconds > 0, or None")
        return float(deadline)
    if timeout is None:
        return None if deadline is None else DEFAULT_TIMEOUT
    if isinstance(timeout, httpx2.Timeout):
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


def _parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _error_from_response(status: int, body: bytes) -> APIError:
    """Map a non-200 response to the exception of PROTOCOL.md section 4."""
    details: dict[str, Any] | None
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        details = parsed
        raw_detail = parsed.get("detail")
        detail = raw_detail if isinstance(raw_detail, str) else None
        if detail is None and raw_detail is not None:
            detail = json.dumps(raw_detail)[:500]
    else:
        text = body[:500].decode("utf-8", "replace").strip()
        details = {"body": text} if text else None
        detail = None

    if status == 400:
        return InvalidRequestError(f"Bad request: {detail or 'Unknown error'}", 400, details)
    if status == 401:
        return AuthenticationError(
            detail or "Invalid API key or authentication failed", 401, details
        )
    if status == 403:
        return ForbiddenError(
            f"Forbidden: {detail or 'Model not allowed for the requested security tier'}",
            403,
            details,
        )
    if status == 404:
        return APIError(
            f"Endpoint not found: {detail or 'Secure inference not enabled'}", 404, details
        )
    if status == 429:
        return RateLimitError(f"Rate limit exceeded: {detail or 'unknown'}", 429, details)
    if status == 500:
        return ServerError(f"Server error: {detail or 'unknown'}", 500, details)
    if status == 503:
        return ServiceUnavailableError(f"Service unavailable: {detail or 'unknown'}", 503, details)
    return APIError(f"Unexpected status code: {status} {detail or 'unknown'}", status, details)


class SecureCompletionClient:
    """Client for ``/v1/chat/secure_completion`` (same constructor and methods as nomyo 0.2.9).

    Extra keyword-only options harden and tune it: ``api_key`` (else ``NOMYO_API_KEY``),
    ``timeout`` (each connect/read/write) and ``deadline`` (one whole attempt, by default a
    numeric ``timeout``), ``verify``/``ca_bundle`` (TLS verification is never off for https),
    ``server_key_fingerprint`` (pin), ``server_key_pin_file`` (trust on first use),
    ``key_size``, ``key_dir``/``key_password`` (load-or-generate-and-save),
    ``key_rotation_interval`` (seconds, 0 disables), ``key_rotation_dir``/``key_rotation_password``,
    ``attestation`` (``"off"``/``"auto"``/``"bound"``/``"require"``; unset, tier ``maximum``
    requires ``"require"`` with a ``trusted_aik`` and ``"bound"`` without), ``pcr_baseline``,
    ``trusted_aik`` (or ``aik_pin_file``: the AIK enrolled for this server with
    ``nomyo-native attest enroll``),
    ``retry_backoff``/``max_backoff``/``max_retry_after`` (seconds), and for tests or custom
    runtimes ``transport`` (an httpx2 transport), ``sleep`` and ``clock``.

    The client's own pair (generated in memory, or loaded from or first saved to ``key_dir``)
    rotates after ``key_rotation_interval``, in memory: a rotated pair is saved only to
    ``key_rotation_dir`` when given (never ``key_dir`` itself, nor a directory ``generate_keys``
    saved to: a rotation never overwrites the user's pair), and the files in ``key_dir`` are
    never overwritten. Pairs
    installed with ``load_keys`` are never rotated automatically. ``require_payload_echo=True``
    refuses a response that does not echo the request's payload id (tier ``maximum`` always
    needs the echo or a TPM quote bound to it).
    ``secure_memory`` is accepted for compatibility: the core holds every secret in locked,
    wiped memory whatever its value.
    """

    def __init__(
        self,
        router_url: str = "https://api.nomyo.ai",
        allow_http: bool = False,
        secure_memory: bool = True,
        max_retries: int = 2,
        *,
        api_key: str | None = None,
        timeout: float | httpx2.Timeout | None = DEFAULT_TIMEOUT,
        deadline: float | None = _FROM_TIMEOUT,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        ca_bundle: str | os.PathLike[str] | None = None,
        server_key_fingerprint: str | None = None,
        server_key_pin_file: str | os.PathLike[str] | None = None,
        key_size: int = 4096,
        key_dir: str | os.PathLike[str] | None = None,
        key_password: str | None = None,
        key_rotation_interval: float = DEFAULT_KEY_ROTATION_INTERVAL,
        key_rotation_dir: str | os.PathLike[str] | None = None,
        key_rotation_password: str | None = None,
        attestation: str | None = None,
        pcr_baseline: dict[str, Any] | str | os.PathLike[str] | None = None,
        trusted_aik: Any = None,
        aik_pin_file: str | os.PathLike[str] | None = None,
        retry_backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        require_payload_echo: bool = False,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        _keyring: KeyRing | None = None,
    ) -> None:
        if not isinstance(router_url, str):
            raise TypeError("router_url must be a str")
        self.router_url = router_url.rstrip("/")
        # The URL as messages, reprs and logs show it: user:password in it never appears.
        self._shown_url = redact_url(self.router_url)
        invalid = ValueError(
            f"{option('base_url', redact_url(router_url))} is not an http(s) URL with a host "
            "(e.g. https://api.nomyo.ai)"
        )
        parsed: urllib.parse.SplitResult | None
        try:
            parsed = urllib.parse.urlsplit(self.router_url)
            # Requests go to the URL without userinfo (httpx2 logs request URLs in full); the
            # credentials it carried are sent as Basic auth, as httpx2 did from the URL.
            self._request_url, self._url_auth = split_credentials(self.router_url)
            userinfo = httpx2.URL(self.router_url)
            self._url_secrets = tuple(s for s in (userinfo.password, userinfo.username) if s)
        except (ValueError, httpx2.InvalidURL):
            # Raised below, outside this handler: the parser's message quotes URL parts (a
            # password taken for a port), and not even __context__ may keep it.
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise invalid
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        if key_size not in (2048, 3072, 4096):
            raise ValueError("key_size must be 2048, 3072 or 4096")
        for name, value in (
            ("retry_backoff", retry_backoff),
            ("max_backoff", max_backoff),
            ("max_retry_after", max_retry_after),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0")

        self.allow_http = allow_http
        self.max_retries = max_retries
        self.key_size = key_size
        self.api_key = validate_api_key(
            api_key if api_key is not None else os.environ.get("NOMYO_API_KEY")
        )
        self._https = parsed.scheme == "https"
        self._secure_memory = secure_memory
        self._timeout = timeout
        self._deadline = _attempt_deadline(timeout, deadline)
        self._ssl_context = _tls_context(verify, ca_bundle) if self._https else None
        self._pin = (
            normalize_fingerprint(server_key_fingerprint)
            if server_key_fingerprint is not None
            else None
        )
        self._pin_file = PinFile(server_key_pin_file) if server_key_pin_file is not None else None
        self._key_dir = Path(key_dir) if key_dir is not None else None
        self._key_password = key_password
        self._rotation_dir = Path(key_rotation_dir) if key_rotation_dir is not None else None
        # Directories holding a pair the user asked for (key_dir, generate_keys' key_dir): a
        # rotation never writes there, however the rotation dir is spelled.
        self._user_key_dirs: list[Path] = [self._key_dir] if self._key_dir is not None else []
        if self._rotation_dir is not None and self._is_user_key_dir(self._rotation_dir):
            raise ValueError(
                "key_rotation_dir is key_dir: rotated pairs would overwrite the pair you keep "
                "there; give key_rotation_dir a directory of its own (or leave it out to rotate "
                "in memory only)"
            )
        self._rotation_password = key_rotation_password
        # Checked now: a bad baseline or pin, or "require" with nothing to root a quote in, must
        # fail here, not after a prompt was sent.
        self.pcr_baseline = prepare_baseline(pcr_baseline) if pcr_baseline is not None else None
        if trusted_aik is not None:
            validate_trusted_aik(trusted_aik)
        self.trusted_aik = trusted_aik
        self._untrusted_key_hint: str | None = None
        if aik_pin_file is not None:
            self.trusted_aik = _enrolled_aik(aik_pin_file, self.router_url, trusted_aik)
            self._untrusted_key_hint = _re_enroll_hint(aik_pin_file, self.router_url)
        self._explicit_attestation = attestation
        if attestation is not None:
            resolve_policy(
                validate_attestation_policy(attestation), None, has_anchor=self._has_anchor
            )
        self.attestation = attestation if attestation is not None else "auto"
        self._retry_backoff = retry_backoff
        self._require_payload_echo = bool(require_payload_echo)
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._transport = transport
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._clock = clock
        self._keys = (
            _keyring if _keyring is not None else KeyRing(key_rotation_interval, clock=clock)
        )
        self._server_key: _core.ServerPublicKey | None = None
        self._quoted_public_key: tuple[_core.ClientKeyPair, str] | None = None
        self._loop_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._states_lock = threading.Lock()
        self._closed = False
        self._disposed = False
        # What a sibling client for another base_url needs (see clone_for).
        self._options: dict[str, Any] = {
            "secure_memory": secure_memory,
            "max_retries": max_retries,
            "api_key": self.api_key,
            "timeout": timeout,
            "deadline": deadline,
            "verify": verify,
            "ca_bundle": ca_bundle,
            "server_key_pin_file": server_key_pin_file,
            "key_size": key_size,
            "attestation": attestation,
            "pcr_baseline": self.pcr_baseline,
            "trusted_aik": trusted_aik,
            "aik_pin_file": aik_pin_file,
            "retry_backoff": retry_backoff,
            "max_backoff": max_backoff,
            "max_retry_after": max_retry_after,
            "require_payload_echo": require_payload_echo,
            "transport": transport,
            "sleep": sleep,
            "clock": clock,
            "key_dir": key_dir,
            "key_password": key_password,
            "key_rotation_dir": key_rotation_dir,
            "key_rotation_password": key_rotation_password,
        }

        if not self._https:
            if allow_http:
                warnings.warn(
                    "WARNING: Using HTTP instead of HTTPS. This is INSECURE and must only be used "
                    "for local development: a man in the middle can swap the server key.",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                logger.debug("non-HTTPS URL without allow_http: requests will be refused")

    def clone_for(self, router_url: str) -> SecureCompletionClient:
        """A client for another base URL sharing this one's key pair and options (but not the
        server-key pin, which belongs to this URL's server)."""
        self._check_usable()
        options = dict(self._options)
        if self._ssl_context is not None:
            options["verify"], options["ca_bundle"] = self._ssl_context, None
        return SecureCompletionClient(router_url, self.allow_http, _keyring=self._keys, **options)

    # ---- compatibility attributes ------------------------------------------------------------

    @property
    def private_key(self) -> _core.ClientKeyPair | None:
        """The current key pair handle (opaque: the private key never leaves the core)."""
        return self._keys.current

    @property
    def public_key_pem(self) -> str | None:
        current = self._keys.current
        return current.public_key_pem if current is not None else None

    @property
    def client_key_fingerprint(self) -> str | None:
        current = self._keys.current
        return current.fingerprint if current is not None else None

    @property
    def server_key_fingerprint(self) -> str | None:
        """Fingerprint of the cached server key (None before the first fetch)."""
        return self._server_key.fingerprint if self._server_key is not None else None

    # ---- keys --------------------------------------------------------------------------------

    def generate_keys(
        self, save_to_file: bool = False, key_dir: str = "client_keys", password: str | None = None
    ) -> _Completed[None]:
        """Generate a key pair in locked memory (optionally saved). Works plain or awaited."""
        self._check_usable()
        self._generate_and_install(save_to_file, key_dir, password)
        return _Completed(None)

    async def agenerate_keys(
        self, save_to_file: bool = False, key_dir: str = "client_keys", password: str | None = None
    ) -> None:
        """:meth:`generate_keys` off the event loop thread."""
        self._check_usable()
        await asyncio.to_thread(self._generate_and_install, save_to_file, key_dir, password)

    def load_keys(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
    ) -> _Completed[None]:
        """Load a key pair (password from ``password`` or ``NOMYO_KEY_PASSWORD``).
        Works plain or awaited."""
        self._check_usable()
        keypair = self._load_keypair(private_key_path, public_key_path, password)
        self._keys.install(keypair, rotatable=False)
        return _Completed(None)

    async def aload_keys(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
    ) -> None:
        """:meth:`load_keys` off the event loop thread."""
        self._check_usable()
        keypair = await asyncio.to_thread(
            self._load_keypair, private_key_path, public_key_path, password
        )
        self._keys.install(keypair, rotatable=False)

    def _generate_and_install(
        self, save_to_file: bool, key_dir: str | os.PathLike[str], password: str | None
    ) -> None:
        keypair = self._generate_keypair()
        if save_to_file:
            self._save_keypair(keypair, Path(key_dir), password)
            self._user_key_dirs.append(Path(key_dir))
        self._keys.install(keypair, rotatable=True)

    def _generate_keypair(self) -> _core.ClientKeyPair:
        started = time.perf_counter()
        keypair = _core.ClientKeyPair.generate(self.key_size)
        logger.debug(
            "generated %d-bit client key pair in %.0f ms",
            self.key_size,
            (time.perf_counter() - started) * 1000,
        )
        return keypair

    @staticmethod
    def _save_keypair(keypair: _core.ClientKeyPair, key_dir: Path, password: str | None) -> None:
        SecureCompletionClient._write_keypair(keypair, key_dir, password)
        SecureCompletionClient._report_saved(key_dir, password)

    @staticmethod
    def _write_keypair(keypair: _core.ClientKeyPair, key_dir: Path, password: str | None) -> None:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            keypair.save(key_dir / "private_key.pem", key_dir / "public_key.pem", password)
        except _core.KeyPasswordError as exc:
            hint = f"the password comes from {option('key_password')}"
            raise KeyLoadError(f"{exc} ({hint})") from None

    @staticmethod
    def _report_saved(key_dir: Path, password: str | None) -> None:
        if not password:
            # nomyo 0.2.9 saves without a password when none is given; so do we, but loudly.
            message = (
                f"private key saved UNENCRYPTED in {key_dir}: anyone who can read that file can "
                f"decrypt your responses. Set a password with {option('key_password')}"
            )
            warnings.warn(message, UserWarning, stacklevel=4)
            logger.warning("%s", message)
        else:
            logger.debug("key pair saved (password-protected) in %s", key_dir)

    @staticmethod
    def _load_keypair(
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None,
        password: str | None,
    ) -> _core.ClientKeyPair:
        password = _key_password(password)
        started = time.perf_counter()
        try:
            keypair = _core.ClientKeyPair.load(private_key_path, password)
        except _core.KeyPermissionError:
            path = os.fspath(private_key_path)
            raise InsecureKeyFileError(
                f"Private key file {path} is readable or writable by group or others; "
                f"refusing to use it. Fix with: chmod 600 {path}"
            ) from None
        except _core.KeyPasswordError as exc:
            raise KeyLoadError(
                f"Failed to load private key {os.fspath(private_key_path)}: {exc} "
                f"(the password comes from {option('key_password')})"
            ) from None
        except _core.KeyFormatError as exc:
            raise KeyLoadError(f"Failed to load private key: {exc}") from None
        if public_key_path is not None:
            with open(public_key_path, "rb") as fh:
                public_pem = fh.read(MAX_PUBLIC_KEY_BYTES + 1)
            try:
                public_fp = _core.ServerPublicKey.from_pem(public_pem).fingerprint
            except _core.KeyFormatError as exc:
                keypair.wipe()
                raise KeyLoadError(f"Failed to load public key: {exc}") from None
            if public_fp != keypair.fingerprint:
                keypair.wipe()
                raise KeyLoadError(
                    f"Public key {os.fspath(public_key_path)} does not belong to the private key"
                )
        logger.debug(
            "loaded %d-bit client key pair in %.0f ms",
            keypair.bits,
            (time.perf_counter() - started) * 1000,
        )
        return keypair

    def _initial_keypair(self) -> tuple[_core.ClientKeyPair, bool]:
        """The first key pair: from ``key_dir`` (load or generate-and-save) or in memory."""
        if self._key_dir is None:
            return self._generate_keypair(), True
        private_path = self._key_dir / "private_key.pem"
        public_path = self._key_dir / "public_key.pem"
        password = _key_password(self._key_password)
        if private_path.exists():
            keypair = self._load_keypair(
                private_path, public_path if public_path.exists() else None, password
            )
            return keypair, True
        keypair = self._generate_keypair()
        if self._save_first_keypair(keypair, self._key_dir, password):
            return keypair, True
        # Another process saved its pair there first: that one is the user's pair now (its
        # public half may still be on its way: the private key alone is loaded).
        keypair.wipe()
        return self._load_keypair(private_path, None, password), True

    @staticmethod
    def _save_first_keypair(
        keypair: _core.ClientKeyPair, key_dir: Path, password: str | None
    ) -> bool:
        """Save the first pair into ``key_dir`` without ever replacing a private key there:
        False when one appeared meanwhile (clients in several processes starting at once).

        The pair is written into a fresh directory beside, then hard-linked into place, which
        fails if the name exists (a rename would silently replace it).
        """
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".nomyo-new-pair-", dir=key_dir))
        try:
            SecureCompletionClient._write_keypair(keypair, staging, password)
            private_path = key_dir / "private_key.pem"
            try:
                os.link(staging / "private_key.pem", private_path)
            except FileExistsError:
                return False
            except OSError:
                # A file system without hard links: the check and the rename are not atomic
                # together, but a pair already there is still never replaced knowingly.
                if private_path.exists():
                    return False
                os.replace(staging / "private_key.pem", private_path)
            # The public half belongs to the private key just placed.
            os.replace(staging / "public_key.pem", key_dir / "public_key.pem")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        SecureCompletionClient._report_saved(key_dir, password)
        return True

    def _rotated_keypair(self) -> _core.ClientKeyPair:
        """A fresh pair, saved only to ``key_rotation_dir``. ``key_dir`` holds the user's pair
        and is never overwritten: a client that rotated away from it loads it again on its
        next start, as intended."""
        keypair = self._generate_keypair()
        if self._rotation_dir is None:
            return keypair
        if self._is_user_key_dir(self._rotation_dir):
            # Became one after construction (generate_keys saved there, or a symlink): the
            # user's files win; the new pair lives in memory only.
            logger.warning(
                "rotated key pair not saved: key_rotation_dir %s holds your own key pair",
                self._rotation_dir,
            )
            return keypair
        password = _key_password(self._rotation_password, self._key_password)
        self._save_keypair(keypair, self._rotation_dir, password)
        return keypair

    def _is_user_key_dir(self, directory: Path) -> bool:
        """Whether ``directory`` is (by path or, when both exist, by inode) one the user keeps
        a pair in."""
        resolved = os.path.realpath(directory.expanduser())
        for user_dir in self._user_key_dirs:
            if os.path.realpath(user_dir.expanduser()) == resolved:
                return True
            try:
                if os.path.samefile(user_dir.expanduser(), directory.expanduser()):
                    return True
            except OSError:
                continue  # one of them does not exist yet: the path comparison decided
        return False

    async def _ensure_keys(self) -> None:
        """Load or generate the key pair on first use; rotate when the interval has passed."""
        if self._keys.current is not None and not self._keys.rotation_due():
            return
        async with self._keys.creation_lock():
            if self._keys.current is None:
                keypair, rotatable = await asyncio.to_thread(self._initial_keypair)
                self._keys.install(keypair, rotatable=rotatable)
            elif self._keys.rotation_due():
                keypair = await asyncio.to_thread(self._rotated_keypair)
                self._keys.install(keypair, rotatable=True)
                logger.info("client key pair rotated")

    # ---- transport ---------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._states_lock:
            state = self._loop_states.get(loop)
            if state is None:
                if self._closed:
                    raise ClientClosedError("the client is closed")
                limits = httpx2.Limits(max_connections=100, max_keepalive_connections=32)
                # Ours unless the caller gave one: TLS in asyncio's SSL transport (see
                # nomyo_native._asyncio_tls_backend).
                transport = self._transport
                if transport is None:
                    transport = AsyncioTLSTransport(self._ssl_context, limits)
                state = _LoopState(
                    http=httpx2.AsyncClient(
                        timeout=self._timeout,
                        verify=self._ssl_context if self._ssl_context is not None else True,
                        auth=self._url_auth,
                        follow_redirects=False,
                        transport=transport,
                        limits=limits,
                    ),
                    server_key_lock=asyncio.Lock(),
                )
                self._loop_states[loop] = state
            return state

    def _check_usable(self) -> None:
        if self._disposed:
            raise ClientClosedError("the client was disposed: its keys are wiped")
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _check_transport_policy(self) -> None:
        if not self._https and not self.allow_http:
            raise SecurityError(
                "Server public key must be fetched over HTTPS to prevent MITM attacks. "
                f"For local development only, pass {option('allow_http')} to allow "
                f"{self._shown_url}"
            )

    def _backoff(self, retry_index: int) -> float:
        ceiling = min(self._max_backoff, self._retry_backoff * (2**retry_index))
        return random.uniform(ceiling / 2, ceiling)

    async def _attempt(
        self,
        http: httpx2.AsyncClient,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        ok_cap: int,
    ) -> tuple[int, bytes, float | None]:
        """Send one attempt and read its body (raw, capped): (status, body, Retry-After s)."""
        async with http.stream(method, url, headers=headers, content=content) as response:
            status = response.status_code
            retry_after = _parse_retry_after(response.headers.get("retry-after"), time.time())
            refused = refused_codings(response.headers)
            if refused:
                if status == 200:
                    raise refuse_encoded(refused)
                # Dropped unread: the status alone says what went wrong.
                return status, b"", retry_after
            cap = ok_cap if status == 200 else MAX_ERROR_BODY_BYTES
            try:
                data = await read_raw_capped(response, cap)
            except ResponseFormatError:
                if status == 200:
                    raise
                data = b""
        return status, data, retry_after

    def _connection_error(self, exc: httpx2.TransportError) -> APIConnectionError:
        tls_failure = tls_verification_failure(exc)
        if tls_failure is not None:
            reason = tls_failure.verify_message or tls_failure.reason or "verification failed"
            return APIConnectionError(
                f"TLS certificate verification failed for {self._shown_url} "
                f"(CERTIFICATE_VERIFY_FAILED: {reason}). If the server uses a private CA, trust "
                f"it with {option('ca_bundle', 'ca.pem')} (or SSL_CERT_FILE); check that the "
                "URL's host name is one the certificate names. Not retried."
            )
        return APIConnectionError(
            f"Failed to connect to {self._shown_url}: {type(exc).__name__}: {exc}"
        )

    def _status_error(self, status: int, data: bytes, secrets: tuple[str, ...] = ()) -> APIError:
        error = _error_from_response(status, data)
        # A server may quote what it was sent ("invalid API key sk-..."): the credentials this
        # request carried never reach the exception, whatever the server wrote.
        error.redact((*secrets, *self._url_secrets, *([self.api_key] if self.api_key else [])))
        parts = urllib.parse.urlsplit(self._shown_url)
        if status == 404 and parts.path.rstrip("/"):
            # The common mistake: an OpenAI-style base URL ending in /v1.
            origin = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
            error.add_hint(
                f"the base URL {self._shown_url} has a path, but it takes none: use "
                f"{option('base_url', origin)}, without /v1"
            )
        return error

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Callable[[], Awaitable[bytes]] | None,
        ok_cap: int,
        tier: str | None = None,
    ) -> bytes:
        """One logical request with retries; returns the 200 body or raises the mapped error.

        ``body`` is called for every attempt, so every attempt is sealed afresh.
        """
        url = self._request_url + path
        http = self._state().http
        headers = {**headers, **IDENTITY_ENCODING}
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            content = await body() if body is not None else None
            started = time.perf_counter()
            logger.debug("%s %s attempt %d/%d", method, path, attempt + 1, attempts)
            delay: float | None = None
            refused_locally = False
            try:
                status, data, retry_after = await asyncio.wait_for(
                    self._attempt(http, method, url, headers, content, ok_cap), self._deadline
                )
            except TimeoutError as exc:
                # A peer that keeps trickling bytes never trips a per-read timeout; the
                # per-attempt deadline bounds it, and the attempt counts as a network failure.
                elapsed = (time.perf_counter() - started) * 1000
                error: APIError | APIConnectionError = APIConnectionError(
                    f"Request to {self._shown_url} timed out: the attempt exceeded its "
                    f"{self._deadline:g} s deadline"
                )
                logger.debug("%s %s deadline exceeded after %.1f ms", method, path, elapsed)
                if attempt + 1 >= attempts:
                    raise error from exc
                delay = self._backoff(attempt)
            except (httpx2.LocalProtocolError, UnicodeEncodeError):
                # Our own HTTP layer refused the request (a header value it cannot send): no
                # retry can change that, and its message quotes the value (maybe a bearer
                # token). Raised below, outside this handler, so that the original is not even
                # kept as the new exception's __context__.
                refused_locally = True
            except httpx2.TransportError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                error = self._connection_error(exc)
                logger.debug(
                    "%s %s network error after %.1f ms: %s",
                    method,
                    path,
                    elapsed,
                    type(exc).__name__,
                )
                if attempt + 1 >= attempts or tls_verification_failure(exc) is not None:
                    raise error from exc
                delay = self._backoff(attempt)
            else:
                elapsed = (time.perf_counter() - started) * 1000
                logger.debug(
                    "%s %s -> %d in %.1f ms (%d bytes)", method, path, status, elapsed, len(data)
                )
                if status == 200:
                    return data
                bearer = headers.get("Authorization", "").removeprefix("Bearer ")
                error = self._status_error(status, data, (bearer,) if bearer else ())
                error.retry_after = retry_after
                if is_permanent_tpm_refusal(error, tier):
                    error.add_hint(
                        "not retried: this server cannot serve tier 'maximum'; use "
                        f"{option('security_tier', 'high')} or a server with a TPM"
                    )
                    raise error
                if status not in RETRYABLE_STATUS_CODES or attempt + 1 >= attempts:
                    raise error
                if retry_after is not None:
                    if retry_after > self._max_retry_after:
                        logger.debug(
                            "Retry-After %.1f s exceeds the bound; not retrying", retry_after
                        )
                        raise error
                    delay = retry_after
                else:
                    delay = self._backoff(attempt)
            if refused_locally:
                raise InvalidRequestError(
                    "the request was refused by the local HTTP layer before the server answered "
                    "(a header value could not be encoded); not retried",
                    None,
                )
            logger.warning(
                "retrying %s %s in %.2f s (attempt %d/%d failed: %s)",
                method,
                path,
                delay,
                attempt + 1,
                attempts,
                type(error).__name__,
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- server key --------------------------------------------------------------------------

    async def fetch_server_public_key(self) -> str:
        """The server's public key PEM, fetched once over verified HTTPS and cached; checked
        against ``server_key_fingerprint`` and the pin file when set."""
        return (await self._server_public_key()).pem

    async def _server_public_key(self) -> _core.ServerPublicKey:
        cached = self._server_key
        if cached is not None:
            return cached
        self._check_transport_policy()
        state = self._state()
        async with state.server_key_lock:
            if self._server_key is not None:
                return self._server_key
            body = await self._request(
                "GET", PUBLIC_KEY_PATH, {"Accept": "text/plain"}, None, MAX_PUBLIC_KEY_BYTES
            )
            try:
                key = _core.ServerPublicKey.from_pem(body)
            except _core.KeyFormatError as exc:
                raise ResponseFormatError(f"Server returned an invalid public key: {exc}") from None
            fingerprint = key.fingerprint
            if self._pin is not None and fingerprint != self._pin:
                raise SecurityError(
                    f"Server public key fingerprint {fingerprint} does not match the pinned "
                    f"{self._pin} ({option('server_key_fingerprint', self._pin)}): refusing "
                    "to encrypt anything to it. If the server's key really changed (a local "
                    "endpoint makes a new one at every start unless --key-file keeps it), "
                    f"check it with: nomyo-native pin {self._shown_url}"
                )
            if self._pin_file is not None:
                await asyncio.to_thread(self._check_pin_file, fingerprint)
            logger.debug("server key %s (%d bits) cached", fingerprint, key.bits)
            self._server_key = key
            return key

    def _check_pin_file(self, fingerprint: str) -> None:
        """Trust on first use: record the fingerprint, refuse a different one later."""
        assert self._pin_file is not None
        self._pin_file.check(self.router_url, fingerprint)

    # ---- envelope ----------------------------------------------------------------------------

    @staticmethod
    def _validate_payload(payload: Any) -> None:
        if not isinstance(payload, dict):
            raise ValueError("Payload must be a dictionary")
        if not payload:
            raise ValueError("Payload cannot be empty")
        stream = payload.get("stream")
        if stream is not None and stream is not False:
            # NOMYO servers answer 400 to any stream but JSON false or null (nomyo 0.2.9
            # documents as much): refuse it before the prompt is sealed and sent for nothing.
            # Identity, not truth: 0, "" and [] are JSON values a server refuses too.
            raise InvalidRequestError(
                "stream=True is not supported: the secure completion protocol has no streaming "
                "(each answer is one encrypted response); leave stream out or set it to False",
                None,
            )

    @staticmethod
    async def _seal(payload: dict[str, Any], server_key: _core.ServerPublicKey) -> bytes:
        started = time.perf_counter()
        try:
            envelope = await asyncio.to_thread(_core.seal, payload, server_key)
        except _core.PayloadTooLargeError as exc:
            raise PayloadTooLargeError(f"Payload too large: {exc}") from None
        except _core.CoreError:
            raise SecurityError("Encryption operation failed") from None
        logger.debug(
            "sealed request: %d bytes in %.1f ms",
            len(envelope),
            (time.perf_counter() - started) * 1000,
        )
        return envelope

    async def encrypt_payload(self, payload: dict[str, Any]) -> bytes:
        """Seal ``payload`` to the server key: the request envelope JSON (PROTOCOL.md s.2)."""
        self._check_usable()
        self._validate_payload(payload)
        server_key = await self._server_public_key()
        return await self._seal(payload, server_key)

    async def _open(
        self, body: bytes, payload_id: str, keypair: _core.ClientKeyPair
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            payload, processed_at, algorithm = await asyncio.to_thread(_core.open, body, keypair)
        except _core.CryptoError:
            raise SecurityError(OPAQUE_CRYPTO_MESSAGE) from None
        except (_core.EnvelopeError, _core.PayloadTooLargeError) as exc:
            raise ResponseFormatError(f"Invalid encrypted response: {exc}") from None
        except _core.KeyDisposedError:
            raise ClientClosedError("the client was disposed: its keys are wiped") from None
        logger.debug(
            "opened response: %d bytes in %.1f ms",
            len(body),
            (time.perf_counter() - started) * 1000,
        )
        if not isinstance(payload, dict):
            raise ResponseFormatError("Decrypted response is not a JSON object")
        metadata = payload.get("_metadata")
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict):
            raise ResponseFormatError("Decrypted response has a non-object _metadata")
        verified = echo_matches(metadata, payload_id)
        for key in CLIENT_METADATA_KEYS:
            metadata.pop(key, None)  # ours to compute: nothing the server sent survives
        metadata.update(
            {
                # nomyo's field, always the request's own id; whether the server vouched for it
                # is payload_id_verified.
                "payload_id": payload_id,
                "payload_id_verified": verified,
                "processed_at": processed_at,
                "is_encrypted": True,
                "encryption_algorithm": algorithm,
            }
        )
        payload["_metadata"] = metadata
        return payload

    def _finish(
        self,
        metadata: dict[str, Any],
        payload_id: str,
        policy: str,
        tier: str | None,
        sealed_to: _core.ServerPublicKey | None,
        require_echo: bool | None = None,
    ) -> None:
        """Attestation policy, then binding: raises SecurityError when the response must not be
        handed out (the decrypted content is then dropped)."""
        if policy == "off":
            metadata["attestation_verification"] = dict(_NOT_CHECKED)
        else:
            apply_attestation_policy(
                metadata,
                payload_id,
                policy,
                pcr_baseline=self.pcr_baseline,
                trusted_aik=self.trusted_aik,
                # The key this request was encrypted to: a quote relayed from another server is
                # bound to that server's key and fails (the attestation extension).
                server_key_fingerprint=sealed_to.fingerprint if sealed_to is not None else None,
                untrusted_key_hint=self._untrusted_key_hint,
            )
        if require_echo is None:
            require_echo = self._require_payload_echo
        enforce_binding(metadata, tier=tier, require_echo=require_echo)

    @property
    def _has_anchor(self) -> bool:
        """Whether a quote can be rooted: a pinned attestation key."""
        return self.trusted_aik is not None

    def _policy_for(self, attestation: str | None, security_tier: str | None) -> str:
        if attestation is not None:
            validate_attestation_policy(attestation)
        explicit = attestation if attestation is not None else self._explicit_attestation
        return resolve_policy(explicit, security_tier, has_anchor=self._has_anchor)

    async def decrypt_response(
        self,
        encrypted_response: bytes,
        payload_id: str,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> dict[str, Any]:
        """Open a response envelope with the current key pair, check the payload id binding,
        fill ``_metadata`` and apply the attestation policy (``require_payload_echo`` overrides
        the client's setting for this call)."""
        self._check_usable()
        if not encrypted_response:
            raise ValueError("Empty encrypted response")
        if not isinstance(encrypted_response, (bytes, bytearray)):
            raise ValueError("Encrypted response must be bytes")
        policy = self._policy_for(attestation, None)
        if self._keys.current is None:
            raise SecurityError(
                "Private key not initialized. Call generate_keys() or load_keys() first."
            )
        keypair = self._keys.acquire()
        try:
            response = await self._open(bytes(encrypted_response), payload_id, keypair)
        finally:
            self._keys.release(keypair)
        self._finish(
            response["_metadata"],
            payload_id,
            policy,
            None,
            self._server_key,
            require_payload_echo,
        )
        return response

    def _public_key_header(self, keypair: _core.ClientKeyPair) -> str:
        # Percent-encoding a 4096-bit PEM costs more than the rest of the headers: once per key.
        cached = self._quoted_public_key
        if cached is None or cached[0] is not keypair:
            cached = (keypair, urllib.parse.quote(keypair.public_key_pem))
            self._quoted_public_key = cached
        return cached[1]

    async def send_secure_request(
        self,
        payload: dict[str, Any],
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> dict[str, Any]:
        """Seal ``payload``, POST it (with retries), open and check the response
        (``require_payload_echo`` overrides the client's setting for this call)."""
        self._check_usable()
        tier = validate_security_tier(security_tier)
        bearer = validate_api_key(api_key) if api_key is not None else self.api_key
        validate_payload_id(payload_id)
        self._validate_payload(payload)
        policy = self._policy_for(attestation, tier)
        server_key = await self._server_public_key()
        await self._ensure_keys()
        keypair = self._keys.acquire()
        try:
            headers = {
                "X-Payload-ID": payload_id,
                "X-Public-Key": self._public_key_header(keypair),
                "Content-Type": "application/octet-stream",
            }
            if bearer:
                headers["Authorization"] = f"Bearer {bearer}"
            if tier:
                headers["X-Security-Tier"] = tier

            async def seal_fresh() -> bytes:
                return await self._seal(payload, server_key)

            body = await self._request(
                "POST", COMPLETION_PATH, headers, seal_fresh, _core.MAX_ENVELOPE_BYTES, tier
            )
            response = await self._open(body, payload_id, keypair)
        finally:
            self._keys.release(keypair)
        self._finish(
            response["_metadata"], payload_id, policy, tier, server_key, require_payload_echo
        )
        return response

    # ---- lifecycle ---------------------------------------------------------------------------

    def _take_states(self) -> list[tuple[asyncio.AbstractEventLoop, _LoopState]]:
        with self._states_lock:
            self._closed = True
            taken = list(self._loop_states.items())
            self._loop_states.clear()
        return taken

    async def aclose(self) -> None:
        """Close the pooled connections (keys are kept; see :meth:`dispose`)."""
        current = asyncio.get_running_loop()
        for loop, state in self._take_states():
            if loop is current:
                await state.http.aclose()
            elif not loop.is_closed():
                asyncio.run_coroutine_threadsafe(state.http.aclose(), loop)

    def close(self) -> None:
        """Close the pooled connections from synchronous code."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, state in self._take_states():
            if loop.is_closed():
                continue
            if loop is running:
                loop.create_task(state.http.aclose())
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(state.http.aclose(), loop)
            else:
                loop.run_until_complete(state.http.aclose())

    def dispose(self) -> None:
        """Wipe every key handle now and close the connections; the client is then unusable."""
        self._disposed = True
        self._keys.wipe_all()
        self.close()
        logger.debug("client disposed: key pairs wiped")

    async def adispose(self) -> None:
        self._disposed = True
        self._keys.wipe_all()
        await self.aclose()

    async def __aenter__(self) -> SecureCompletionClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> SecureCompletionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SecureCompletionClient {self._shown_url} closed={self._closed}>"
