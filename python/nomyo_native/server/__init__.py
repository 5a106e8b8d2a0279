"""The local secure endpoint: a protocol peer on pyca/cryptography (never the native core).

``start_server(ServerConfig(port=0, tls_self_signed=True, tpm="swtpm"))`` runs one in a
background thread; ``nomyo-native serve`` runs one in the foreground. Needs the ``server``
extra (starlette, uvicorn, cryptography) and, for TPM quotes, the ``tpm`` extra.
"""

from nomyo_native.server.config import ServerConfig
from nomyo_native.server.crypto import ServerKey
from nomyo_native.server.policy import ApiKeyPolicy, TierPolicy
from nomyo_native.server.recording import RecordedKeys
from nomyo_native.server.runner import RunningServer, serve, start_server

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
