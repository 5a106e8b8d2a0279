"""SecureChatCompletion: the OpenAI-shaped API of nomyo 0.2.9, plus ``chat.completions.create``
and a synchronous client, all over one :class:`SecureCompletionClient`."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from nomyo_native.client import SecureCompletionClient, validate_security_tier

__all__ = ["SecureChatCompletion", "SyncSecureChatCompletion"]

T = TypeVar("T")

# Options that steer the client and never enter the encrypted OpenAI request.
CLIENT_ONLY_OPTIONS = (
    "base_url",
    "security_tier",
    "api_key",
    "attestation",
    "require_payload_echo",
)


class _Completions:
    """``client.chat.completions``: OpenAI-style spelling of ``create``."""

    def __init__(self, owner: SecureChatCompletion) -> None:
        self._owner = owner

    async def create(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> dict:
        return await self._owner.create(model, messages, **kwargs)


class _Chat:
    def __init__(self, owner: SecureChatCompletion) -> None:
        self.completions = _Completions(owner)


class SecureChatCompletion:
    """OpenAI-compatible secure chat completion client (same constructor as nomyo 0.2.9).

    Extra keyword-only options are passed to :class:`SecureCompletionClient` (``timeout``,
    ``ca_bundle``, ``server_key_fingerprint``, ``key_password``, ``key_rotation_interval``,
    ``attestation``, ...). Use it as an async context manager, or call ``aclose()``; ``dispose()``
    also wipes the key pair.
    """

    def __init__(
        self,
        base_url: str = "https://api.nomyo.ai",
        allow_http: bool = False,
        api_key: str | None = None,
        secure_memory: bool = True,
        key_dir: str | None = None,
        max_retries: int = 2,
        **options: Any,
    ) -> None:
        # The client resolves the key (argument, else NOMYO_API_KEY) and validates it once;
        # this object reports the same key the client sends.
        self.client = SecureCompletionClient(
            base_url,
            allow_http,
            secure_memory,
            max_retries,
            api_key=api_key,
            key_dir=key_dir,
            **options,
        )
        self.api_key = self.client.api_key
        self._key_dir = key_dir
        self._secure_memory_enabled = secure_memory
        self._siblings: dict[str, SecureCompletionClient] = {}
        self._siblings_lock = threading.Lock()
        self.chat = _Chat(self)

    @property
    def _keys_initialized(self) -> bool:
        return self.client.private_key is not None

    async def _ensure_keys(self) -> None:
        """Load or generate the key pair now (nomyo 0.2.9 has this helper; some code calls it
        to pay for key generation up front)."""
        await self.client._ensure_keys()

    def _client_for(self, base_url: str | None) -> SecureCompletionClient:
        if base_url is None or base_url.rstrip("/") == self.client.router_url:
            return self.client
        key = base_url.rstrip("/")
        with self._siblings_lock:
            sibling = self._siblings.get(key)
            if sibling is None:
                sibling = self.client.clone_for(key)
                self._siblings[key] = sibling
            return sibling

    async def create(
        self, model: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        """Create an encrypted chat completion; OpenAI parameters pass through in ``kwargs``.

        Client-only options: ``base_url``, ``security_tier`` (``standard``/``high``/
        ``maximum``), ``api_key`` (per-call override), ``attestation`` (``off``/``auto``/
        ``bound``/``require``), ``require_payload_echo`` (refuse an answer that does not echo
        the request's payload id).
        """
        base_url = kwargs.pop("base_url", None)
        security_tier = validate_security_tier(kwargs.pop("security_tier", None))
        api_key = kwargs.pop("api_key", None)
        attestation = kwargs.pop("attestation", None)
        require_payload_echo = kwargs.pop("require_payload_echo", None)
        client = self._client_for(base_url)
        payload: dict[str, Any] = {"model": model, "messages": messages, **kwargs}
        return await client.send_secure_request(
            payload,
            str(uuid.uuid4()),
            api_key if api_key is not None else self.api_key,
            security_tier,
            attestation=attestation,
            require_payload_echo=require_payload_echo,
        )

    async def acreate(
        self, model: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        """Alias of :meth:`create` (OpenAI naming)."""
        return await self.create(model, messages, **kwargs)

    def _all_clients(self) -> list[SecureCompletionClient]:
        with self._siblings_lock:
            return [self.client, *self._siblings.values()]

    async def aclose(self) -> None:
        for client in self._all_clients():
            await client.aclose()

    def close(self) -> None:
        for client in self._all_clients():
            client.close()

    def dispose(self) -> None:
        """Wipe the key pair (shared by all base URLs) and close every connection."""
        for client in self._all_clients():
            client.dispose()

    async def __aenter__(self) -> SecureChatCompletion:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<SecureChatCompletion {self.client._shown_url}>"


class _SyncCompletions:
    def __init__(self, owner: SyncSecureChatCompletion) -> None:
        self._owner = owner

    def create(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> dict:
        return self._owner.create(model, messages, **kwargs)


class _SyncChat:
    def __init__(self, owner: SyncSecureChatCompletion) -> None:
        self.completions = _SyncCompletions(owner)


class SyncSecureChatCompletion:
    """Blocking client for scripts: the same machinery on a private event loop thread, so that
    connections stay pooled between calls and it works even where a loop is already running."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nomyo-native-sync", daemon=True
        )
        self._thread.start()
        try:
            self._async = SecureChatCompletion(*args, **kwargs)
        except BaseException:
            self._stop_loop()
            raise
        self.chat = _SyncChat(self)

    @property
    def client(self) -> SecureCompletionClient:
        return self._async.client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def create(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        return self._run(self._async.create(model, messages, **kwargs))

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.aclose())
        self._stop_loop()

    def dispose(self) -> None:
        if not self._loop.is_closed():
            self._run(self._async.aclose())
        for client in self._async._all_clients():
            client.dispose()
        self._stop_loop()

    def __enter__(self) -> SyncSecureChatCompletion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncSecureChatCompletion {self.client._shown_url}>"
