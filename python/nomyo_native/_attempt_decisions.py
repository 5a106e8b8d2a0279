"""How a client judges each attempt of a request, with no I/O: the target, the log lines, a
non-200 answer or a failed send turned into the delay before the next attempt or the error.
Both clients run the same loop (send, judge, sleep) on their driver with these decisions.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from nomyo_native import _protocol
from nomyo_native._client_attributes import ClientAttributes
from nomyo_native._config import RouterURL
from nomyo_native._protocol import Answer
from nomyo_native._retry import tls_verification_failure
from nomyo_native.errors import APIConnectionError

if TYPE_CHECKING:
    import ssl

    from nomyo_native._pinfile import PinFile

__all__ = ["AttemptDecisions", "Edge", "log_answer", "log_retry"]

logger = logging.getLogger("nomyo_native.client")


class Edge(Protocol):
    """What a client needs of the HTTP stack's URL parsing, TLS and exceptions (``_http_edge``,
    on httpx2 and ssl): passed in, so that the decisions load nothing of the network."""

    @property
    def IDENTITY_ENCODING(self) -> dict[str, str]:
        """Sent with every request: no content coding."""

    @property
    def LOCAL_REFUSALS(self) -> tuple[type[BaseException], ...]:
        """Our own HTTP layer refusing a request: never retried, never chained (its message
        quotes the value)."""

    @property
    def NETWORK_FAILURES(self) -> tuple[type[BaseException], ...]:
        """A failed attempt: the network, a timeout, the attempt's deadline."""

    def parse_router_url(self, router_url: Any) -> RouterURL: ...

    def tls_context(
        self, verify: bool | str | os.PathLike[str] | ssl.SSLContext, ca_bundle: Any
    ) -> ssl.SSLContext: ...

    def pin_file(self, path: str | os.PathLike[str]) -> PinFile: ...

    def enrolled_aik(self, pin_file: str | os.PathLike[str], base_url: str) -> str | None: ...

    def normalize_origin(self, url: str) -> str: ...


def log_answer(method: str, path: str, answer: Answer, started: float) -> None:
    elapsed = (time.perf_counter() - started) * 1000
    logger.debug(
        "%s %s -> %d in %.1f ms (%d bytes)",
        method,
        path,
        answer.status,
        elapsed,
        len(answer.body),
    )


def log_retry(method: str, path: str, delay: float, attempt: int, attempts: int) -> None:
    logger.warning(
        "retrying %s %s in %.2f s (attempt %d/%d failed)",
        method,
        path,
        delay,
        attempt + 1,
        attempts,
    )


class AttemptDecisions(ClientAttributes):
    """The per-attempt decisions of ``ClientBase`` (see ``client.SecureCompletionClient._request``
    and ``_sync_client.SyncCompletionClient._request`` for the loop running them)."""

    _url: RouterURL
    _edge: Edge
    _deadline: float | None
    _shown_url: str
    api_key: str | None

    def _target(self, path: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The URL and headers every attempt of a request to ``path`` is sent with."""
        return self._url.request_url + path, {**headers, **self._edge.IDENTITY_ENCODING}

    def _attempt_starts(self, method: str, path: str, attempt: int) -> float:
        logger.debug("%s %s attempt %d/%d", method, path, attempt + 1, self._retry.attempts)
        return time.perf_counter()

    def _after_answer(
        self,
        request: tuple[str, str, dict[str, str], str | None],
        attempt: int,
        answer: Answer,
        started: float,
    ) -> float | None:
        """None when ``answer`` is the 200 to return; else the delay before the next attempt,
        or the error raised. ``request`` is (method, path, headers, tier)."""
        method, path, headers, tier = request
        log_answer(method, path, answer, started)
        if answer.status == 200:
            return None
        status, body, retry_after = answer
        # An error body is bytes already (only a large envelope arrives as a bytearray).
        return self._judge_answer(attempt, status, bytes(body), retry_after, headers, tier)

    def _after_failure(self, attempt: int, exc: BaseException, started: float) -> float | None:
        """A send that raised: None for our own HTTP layer's refusal (the caller raises it,
        outside its handler), else the delay before the next attempt or the error raised from
        ``exc``. Called inside the ``except`` block."""
        if isinstance(exc, self._edge.LOCAL_REFUSALS):
            return None
        return self._judge_failure(attempt, exc, started)

    def _retry_delay(self, method: str, path: str, attempt: int, delay: float | None) -> float:
        """The delay to sleep before the next attempt; outside any handler, so that nothing
        chains a local refusal (its message may quote a bearer token)."""
        if delay is None:
            raise _protocol.locally_refused_error()
        log_retry(method, path, delay, attempt, self._retry.attempts)
        return delay

    def _judge_answer(
        self,
        attempt: int,
        status: int,
        body: bytes,
        retry_after: float | None,
        headers: dict[str, str],
        tier: str | None,
    ) -> float:
        """A non-200 answer to ``attempt``: the delay before the next one, or the error."""
        bearer = headers.get("Authorization", "").removeprefix("Bearer ")
        secrets: tuple[str, ...] = (bearer,) if bearer else ()
        secrets += (*self._url.secrets, *([self.api_key] if self.api_key else []))
        # A server may quote what it was sent ("invalid API key sk-..."): the credentials this
        # request carried never reach the exception, whatever the server wrote.
        error = _protocol.status_error(
            status, body, retry_after, secrets=secrets, shown_url=self._shown_url
        )
        delay = self._retry.after_status(attempt, error, tier)
        if delay is None:
            raise error
        return delay

    def _judge_failure(self, attempt: int, exc: BaseException, started: float) -> float:
        """A failed ``attempt`` (network failure, or its deadline passed): the delay before
        the next one, or the error raised from ``exc``. Called inside the ``except`` block."""
        elapsed = (time.perf_counter() - started) * 1000
        error: APIConnectionError
        if isinstance(exc, TimeoutError):
            assert self._deadline is not None  # only a deadline raises the builtin
            error = _protocol.deadline_error(self._shown_url, self._deadline)
            logger.debug("attempt %d: deadline exceeded after %.1f ms", attempt + 1, elapsed)
        else:
            error = _protocol.connection_error(exc, self._shown_url)
            logger.debug(
                "attempt %d: network error after %.1f ms: %s",
                attempt + 1,
                elapsed,
                type(exc).__name__,
            )
        permanent = tls_verification_failure(exc) is not None
        delay = self._retry.after_failure(attempt, permanent=permanent)
        if delay is None:
            raise error from exc
        return delay
