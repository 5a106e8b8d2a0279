"""The official openai SDK (and libraries built on it) speaking NOMYO end to end.

Pass our HTTP client to the SDK and every chat completion is sealed by the native core, sent to
``/v1/chat/secure_completion``, opened in locked memory and handed back to the SDK::

    from nomyo_native.openai import OpenAI
    client = OpenAI(base_url="https://api.nomyo.ai", api_key="...")
    client.chat.completions.create(model="...", messages=[...])

or, for code that builds its own SDK client (langchain-openai, llama-index, pydantic-ai,
instructor)::

    openai.OpenAI(base_url="https://api.nomyo.ai/v1", api_key="...",
                  http_client=nomyo_native.openai.http_client(base_url="https://api.nomyo.ai"))

``http_client``/``async_http_client`` return an ``httpx2`` client for openai 3.x and an
``httpx`` client for openai 2.x (whichever is installed). Only ``POST
<router>/v1/chat/completions`` is served; anything else is refused in the transport, nothing
sent. ``metadata(completion)`` gives a completion's ``_metadata`` (payload id, attestation).
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

try:
    import openai as _openai
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "nomyo_native.openai needs the openai SDK: pip install 'nomyo-native[openai]'",
        name=missing.name,
    ) from None

from nomyo_native.openai._errors import sdk_propagates_errors
from nomyo_native.openai._flavor import Flavor
from nomyo_native.openai._gate import router_of
from nomyo_native.openai._gateway import warn_if_sdk_logs_plaintext
from nomyo_native.openai._metadata import metadata

__all__ = [
    "AsyncOpenAI",
    "OpenAI",
    "async_http_client",
    "http_client",
    "metadata",
    "sdk_propagates_errors",
]


def _flavor() -> Flavor:
    """httpx2 for openai 3.x, httpx for 2.x."""
    if int(version("openai").split(".")[0]) >= 3:
        from nomyo_native.openai._httpx2 import FLAVOR
    else:
        from nomyo_native.openai._httpx_legacy import FLAVOR
    return FLAVOR


def http_client(base_url: str, **options: Any) -> Any:
    """A blocking HTTP client for ``openai.OpenAI(http_client=...)`` that seals every chat
    completion for the NOMYO router at ``base_url``. ``options`` are the client's own
    (``api_key``, ``security_tier``, ``server_key_fingerprint``, ``ca_bundle``,
    ``attestation``, ``key_dir``...; see ``SecureCompletionClient``)."""
    # Before the first request: the SDK logs a request before handing it to the transport.
    warn_if_sdk_logs_plaintext()
    return _flavor().client(base_url, **options)


def async_http_client(base_url: str, **options: Any) -> Any:
    """The same for ``openai.AsyncOpenAI(http_client=...)``."""
    warn_if_sdk_logs_plaintext()
    return _flavor().async_client(base_url, **options)


def _sdk_arguments(
    base_url: str,
    max_retries: int | None,
    sdk_options: dict[str, Any] | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The SDK's arguments; ``options`` (our client's) lose a key provider to the SDK."""
    arguments = dict(sdk_options or {})
    arguments.setdefault("base_url", router_of(base_url) + "/v1")
    if max_retries is not None:
        arguments["max_retries"] = max_retries
    api_key = options.get("api_key")
    if callable(api_key):
        # A key provider (openai >= 2.0 takes one) is the SDK's: it calls it for every request
        # and sends the result as its bearer, which the transport takes. Our client gets ""
        # (no key of its own) so that NOMYO_API_KEY cannot override the caller's explicit key.
        options["api_key"] = ""
        arguments.setdefault("api_key", api_key)
        return arguments
    # The SDK insists on a key: ours (given, else NOMYO_API_KEY), else its own OPENAI_API_KEY.
    key = api_key if api_key is not None else os.environ.get("NOMYO_API_KEY")
    if key is not None:
        arguments.setdefault("api_key", key)
    return arguments


def OpenAI(
    base_url: str,
    *,
    max_retries: int | None = None,
    sdk_options: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """An ``openai.OpenAI`` pre-wired for NOMYO: base URL ``<router>/v1`` and our HTTP client.
    ``api_key=`` goes to both (a key provider, a callable, to the SDK only: the transport
    takes the bearer it makes); ``max_retries`` and ``sdk_options`` (``timeout``,
    ``default_headers``...) to the SDK; the other options to our client."""
    arguments = _sdk_arguments(base_url, max_retries, sdk_options, options)
    return _openai.OpenAI(http_client=http_client(base_url, **options), **arguments)


def AsyncOpenAI(
    base_url: str,
    *,
    max_retries: int | None = None,
    sdk_options: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """An ``openai.AsyncOpenAI`` pre-wired for NOMYO (see :func:`OpenAI`)."""
    arguments = _sdk_arguments(base_url, max_retries, sdk_options, options)
    return _openai.AsyncOpenAI(http_client=async_http_client(base_url, **options), **arguments)
