"""Policies in isolation: API keys, tier lists, the rate limiter's token bucket."""

from __future__ import annotations

import pytest

from nomyo_native.server.policy import (
    ApiKeyPolicy,
    PolicyError,
    RateLimiter,
    TierPolicy,
    api_keys_from_env,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_bursts_then_refills():
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    assert [limiter.acquire("a") for _ in range(6)] == [None] * 6
    wait = limiter.acquire("a")
    assert wait == pytest.approx(10.0)
    assert limiter.acquire("b") is None  # callers do not share buckets
    clock.now += 5
    assert limiter.acquire("a") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") == pytest.approx(10.0)
    clock.now += 3600  # refills to the burst size, never beyond
    assert [limiter.acquire("a") for _ in range(7)].count(None) == 6


def test_rate_limiter_forgets_idle_callers(monkeypatch):
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    monkeypatch.setattr(RateLimiter, "_MAX_CALLERS", 10)
    for i in range(10):
        limiter.acquire(f"caller-{i}")
    clock.now += 120
    limiter.acquire("new")
    assert len(limiter._buckets) == 1


def test_rate_limiter_rejects_zero():
    with pytest.raises(PolicyError):
        RateLimiter(0)


def test_api_key_policy():
    policy = ApiKeyPolicy(("alpha", "beta"))
    assert policy.check("Bearer alpha") is None
    assert policy.check("bearer beta") is None
    assert policy.check("Bearer gamma") == "invalid API key"
    assert policy.check(None) is not None
    assert ApiKeyPolicy().check(None) is None
    for bad in ("", "with space", "a,b", "line\nbreak"):
        with pytest.raises(PolicyError):
            ApiKeyPolicy((bad,))


def test_api_keys_from_env():
    assert api_keys_from_env({"NOMYO_SERVER_API_KEYS": " a, ,b ,"}) == ("a", "b")
    assert api_keys_from_env({}) == ()


def test_tier_policy_specs():
    policy = TierPolicy.from_specs(["maximum=x", "maximum=y,z"])
    assert policy.allowed_models == {"maximum": frozenset({"x", "y", "z"})}
    assert policy.check("maximum", "y") is None
    assert "not allowed" in policy.check("maximum", "w")
    assert policy.check("high", "w") is None
    with pytest.raises(PolicyError, match="unknown security tier"):
        TierPolicy.from_specs(["ultra=x"])
    with pytest.raises(PolicyError, match="TIER=MODEL"):
        TierPolicy.from_specs(["maximum="])
    with pytest.raises(PolicyError, match="unknown security tier"):
        TierPolicy(default_tier="none")
