"""The local secure endpoint: a protocol peer on pyca/cryptography (never the native core).

``start_server(ServerConfig(port=0, tls_self_signed=True, tpm="swtpm"))`` runs one in a
background thread; ``nomyo-native serve`` runs one in the foreground. Needs the ``server``
extra (starlette, uvicorn, cryptography) and, for TPM quotes, the ``tpm`` extra.

The names below are imported on first use, so that a dependency-free submodule (the limits'
defaults the CLI shows in ``--help``) can be imported without the server extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomyo_native.server.config import ServerConfig
    from nomyo_native.server.crypto import ServerKey
    from nomyo_native.server.policy import ApiKeyPolicy, TierPolicy
    from nomyo_native.server.recording import RecordedKeys
    from nomyo_native.server.runner import RunningServer, serve, start_server

_EXPORTS = {
    "ApiKeyPolicy": "nomyo_native.server.policy",
    "RecordedKeys": "nomyo_native.server.recording",
    "RunningServer": "nomyo_native.server.runner",
    "ServerConfig": "nomyo_native.server.config",
    "ServerKey": "nomyo_native.server.crypto",
    "TierPolicy": "nomyo_native.server.policy",
    "serve": "nomyo_native.server.runner",
    "start_server": "nomyo_native.server.runner",
}

__all__ = [
    "ApiKeyPolicy",
    "RecordedKeys",
    "RunningServer",
    "ServerConfig",
    "ServerKey",
    "TierPolicy",
    "serve",
    "start_server",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
