"""Who may call the endpoint (API keys) and which models each security tier allows."""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

SECURITY_TIERS = ("standard", "high", "maximum")
DEFAULT_TIER = "standard"
API_KEYS_ENV = "NOMYO_SERVER_API_KEYS"


class PolicyError(ValueError):
    """A policy was configured with invalid values (bad tier name, empty key...)."""


def api_keys_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Comma-separated keys from ``NOMYO_SERVER_API_KEYS`` (blank entries ignored)."""
    raw = (os.environ if environ is None else environ).get(API_KEYS_ENV, "")
    return tuple(key.strip() for key in raw.split(",") if key.strip())


_SECRET_FILE_LIMIT = 1 << 20


def read_secret_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of a file holding secrets (at most 1 MiB). Errors name the file, never its
    content. Mode and symlinks are not checked: mounted secrets are often both."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_SECRET_FILE_LIMIT + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _SECRET_FILE_LIMIT:
        raise PolicyError(f"{what} {path} is larger than 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{what} {path} is not UTF-8 text") from None


def api_keys_from_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """One API key per line; blank lines and lines starting with '#' are ignored."""
    lines = read_secret_text(path, "API key file").splitlines()
    keys = tuple(
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
    )
    if not keys:
        raise PolicyError(f"API key file {path} holds no key")
    return keys


@dataclass(frozen=True)
class ApiKeyPolicy:
    """Bearer API keys; with none configured the endpoint is open."""

    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.keys:
            if not key or any(ch in key for ch in "\r\n ,") or not key.isprintable():
                raise PolicyError("API keys must be non-empty printable text without spaces/commas")

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None) -> str | None:
        """None when allowed, else the 401 detail. Compares in constant time per key."""
        if not self.keys:
            return None
        if not authorization:
            return "missing API key (Authorization: Bearer <key>)"
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return "Authorization header must be 'Bearer <key>'"
        candidate = presented.strip().encode("utf-8", "surrogateescape")
        matched = False
        for key in self.keys:
            # No short-circuit: every key is compared, so timing does not reveal which matched.
            matched |= hmac.compare_digest(candidate, key.encode("utf-8"))
        return None if matched else "invalid API key"


@dataclass(frozen=True)
class TierPolicy:
    """Models allowed per tier. A tier absent from ``allowed_models`` allows every model."""

    allowed_models: Mapping[str, frozenset[str]] = field(default_factory=dict)
    default_tier: str = DEFAULT_TIER

    def __post_init__(self) -> None:
        for tier in (*self.allowed_models, self.default_tier):
            if tier not in SECURITY_TIERS:
                raise PolicyError(f"unknown security tier {tier!r}; use one of {SECURITY_TIERS}")

    @classmethod
    def from_specs(cls, specs: Iterable[str], default_tier: str = DEFAULT_TIER) -> TierPolicy:
        """Parse ``TIER=MODEL[,MODEL...]`` strings (repeatable; a tier's lists are merged)."""
        allowed: dict[str, set[str]] = {}
        for spec in specs:
            tier, sep, models = spec.partition("=")
            tier = tier.strip()
            names = {m.strip() for m in models.split(",") if m.strip()}
            if not sep or not names:
                raise PolicyError(f"expected TIER=MODEL[,MODEL...], got {spec!r}")
            allowed.setdefault(tier, set()).update(names)
        return cls({t: frozenset(m) for t, m in allowed.items()}, default_tier)

    def check(self, tier: str, model: str) -> str | None:
        """None when ``model`` may run at ``tier``, else the 403 detail."""
        allowed = self.allowed_models.get(tier)
        if allowed is None or model in allowed:
            return None
        # The model name came encrypted; the refusal travels in clear, so it is not echoed.
        return f"the requested model is not allowed for security tier '{tier}'"


class RateLimiter:
    """A token bucket per caller (API key, else client address): ``per_minute`` requests a
    minute, bursts up to the same number. Refusals carry the seconds until the next token."""

    _MAX_CALLERS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise PolicyError("rate limit must be at least 1 request per minute")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, caller: str) -> float | None:
        """None when the request may proceed, else the seconds to wait (for Retry-After)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                self._prune(now)
                return None
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Bound memory: forget callers whose buckets have refilled completely.
        if len(self._buckets) <= self._MAX_CALLERS:
            return
        for caller, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.capacity:
                del self._buckets[caller]
