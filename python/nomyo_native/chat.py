"""SecureChatCompletion: the OpenAI-shaped API of nomyo 0.2.9, plus ``chat.completions.create``
and a synchronous client, ``SyncSecureChatCompletion``.

Both share one implementation of everything but waiting (:class:`_ChatBase`: the client per
base URL, turning ``create``'s arguments into a payload and options) and one
``chat.completions``; the async one runs on ``SecureCompletionClient``, the sync one on its
blocking twin, with no event loop or helper thread of its own.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any, Generic, Protocol, TypeVar

from nomyo_native._config import ClientOptions
from nomyo_native._protocol import validate_security_tier
from nomyo_native._sync_client import SyncCompletionClient
from nomyo_native.client import SecureCompletionClient
from nomyo_native.types import ChatCompletion

__all__ = ["SecureChatCompletion", "SyncSecureChatCompletion"]

# Options that steer the client and never enter the encrypted OpenAI request.
CLIENT_ONLY_OPTIONS = (
    "base_url",
    "security_tier",
    "api_key",
    "attestation",
    "require_payload_echo",
)

# The client options a chat client takes as keywords beyond nomyo 0.2.9's own arguments.
_EXTRA_OPTIONS = frozenset(field.name for field in dataclasses.fields(ClientOptions)) - {
    "router_url",
    "allow_http",
    "secure_memory",
    "max_retries",
    "api_key",
    "key_dir",
    "_keyring",
}


def _refuse_unknown_options(owner: type, options: dict[str, Any]) -> None:
    """Python's own TypeError for a keyword the constructor does not take, naming the class
    the caller called (nomyo 0.2.9's message), not the private class it passes options to."""
    for name in options:
        if name not in _EXTRA_OPTIONS:
            raise TypeError(
                f"{owner.__name__}.__init__() got an unexpected keyword argument {name!r}"
            )


_Client = TypeVar("_Client", SecureCompletionClient, SyncCompletionClient)
_Result = TypeVar("_Result", covariant=True)


class _Creates(Protocol[_Result]):
    def create(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> _Result: ...


class _Completions(Generic[_Result]):
    """``client.chat.completions``: the OpenAI spelling of ``create`` (keyword-only model and
    messages), for the async client (returns the awaitable) and the sync one alike."""

    def __init__(self, owner: _Creates[_Result]) -> None:
        self._owner = owner

    def create(self, *, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> _Result:
        return self._owner.create(model, messages, **kwargs)


class _Chat(Generic[_Result]):
    def __init__(self, owner: _Creates[_Result]) -> None:
        self.completions = _Completions(owner)


class _ChatBase(Generic[_Client]):
    """The client for each base URL (siblings share the key pair) and the request shaping."""

    client: _Client

    def _init_clients(self, client: _Client, key_dir: str | None, secure_memory: bool) -> None:
        # The client resolves the key (argument, else NOMYO_API_KEY) and validates it once;
        # this object reports the same key the client sends.
        self.client = client
        self.api_key = client.api_key
        self._key_dir = key_dir
        self._secure_memory_enabled = secure_memory
        self._siblings: dict[str, _Client] = {}
        self._siblings_lock = threading.Lock()

    def _client_for(self, base_url: str | None) -> _Client:
        if base_url is None or base_url.rstrip("/") == self.client.router_url:
            return self.client
        key = base_url.rstrip("/")
        with self._siblings_lock:
            sibling = self._siblings.get(key)
            if sibling is None:
                sibling = self._siblings[key] = self.client.clone_for(key)
            return sibling

    def _shape(
        self, model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any]
    ) -> tuple[_Client, dict[str, Any], dict[str, Any]]:
        """(client, payload, send_secure_request arguments) for one ``create`` call."""
        base_url = kwargs.pop("base_url", None)
        security_tier = validate_security_tier(kwargs.pop("security_tier", None))
        api_key = kwargs.pop("api_key", None)
        options = {
            "payload_id": str(uuid.uuid4()),
            "api_key": api_key if api_key is not None else self.api_key,
            "security_tier": security_tier,
            "attestation": kwargs.pop("attestation", None),
            "require_payload_echo": kwargs.pop("require_payload_echo", None),
        }
        client = self._client_for(base_url)
        return client, {"model": model, "messages": messages, **kwargs}, options

    def _all_clients(self) -> list[_Client]:
        clients = [self.client]
        with self._siblings_lock:
            clients.extend(self._siblings.values())
        return clients

    @property
    def _keys_initialized(self) -> bool:
        return self.client.private_key is not None

    def close(self) -> None:
        for client in self._all_clients():
            client.close()

    def dispose(self) -> None:
        """Wipe the key pair (shared by all base URLs) and close every connection."""
        for client in self._all_clients():
            client.dispose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.client._shown_url}>"


class SecureChatCompletion(_ChatBase[SecureCompletionClient]):
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
        _refuse_unknown_options(type(self), options)
        client = SecureCompletionClient(
            base_url,
            allow_http,
            secure_memory,
            max_retries,
            api_key=api_key,
            key_dir=key_dir,
            **options,
        )
        self._init_clients(client, key_dir, secure_memory)
        self.chat = _Chat(self)

    async def _ensure_keys(self) -> None:
        """Load or generate the key pair now (nomyo 0.2.9 has this helper; some code calls it
        to pay for key generation up front)."""
        await self.client._ensure_keys()

    async def create(
        self, model: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> ChatCompletion:
        """Create an encrypted chat completion; OpenAI parameters pass through in ``kwargs``.

        Client-only options: ``base_url``, ``security_tier`` (``standard``/``high``/
        ``maximum``), ``api_key`` (per-call override), ``attestation`` (``off``/``auto``/
        ``bound``/``require``), ``require_payload_echo`` (refuse an answer that does not echo
        the request's payload id).
        """
        client, payload, options = self._shape(model, messages, kwargs)
        return await client.send_secure_request(payload, **options)

    async def acreate(
        self, model: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> ChatCompletion:
        """Alias of :meth:`create` (OpenAI naming)."""
        return await self.create(model, messages, **kwargs)

    async def aclose(self) -> None:
        for client in self._all_clients():
            await client.aclose()

    async def __aenter__(self) -> SecureChatCompletion:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class SyncSecureChatCompletion(_ChatBase[SyncCompletionClient]):
    """Blocking client for scripts: the same arguments as :class:`SecureChatCompletion`, the
    same behaviour (errors, retries, deadlines, caps, pins, ``_metadata``), on a synchronous
    HTTP client; connections stay pooled between calls and it works where a loop is already
    running. ``transport`` must be a sync httpx2 transport and ``sleep`` a plain callable."""

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
        _refuse_unknown_options(type(self), options)
        client = SyncCompletionClient(
            ClientOptions(
                base_url,
                allow_http,
                secure_memory,
                max_retries,
                api_key=api_key,
                key_dir=key_dir,
                **options,
            )
        )
        self._init_clients(client, key_dir, secure_memory)
        self.chat = _Chat(self)

    def create(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> ChatCompletion:
        """:meth:`SecureChatCompletion.create`, blocking."""
        client, payload, options = self._shape(model, messages, kwargs)
        return client.send_secure_request(payload, **options)

    def __enter__(self) -> SyncSecureChatCompletion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
