"""nomyo-native: a hardened, native-core drop-in for the ``nomyo`` client.

``import nomyo_native as nomyo``: the public names of nomyo 0.2.9, plus the OpenAI-style and
synchronous clients. As in nomyo, ``SecureCompletionClient`` is also the module of that name;
here it is callable and works with ``isinstance``, like the class.
"""

# The submodules nomyo 0.2.9 binds as package attributes (nomyo.SecureMemory..., nomyo.nomyo).
from nomyo_native import SecureCompletionClient, _core
from nomyo_native import SecureMemory as SecureMemory
from nomyo_native import nomyo as nomyo
from nomyo_native.chat import SecureChatCompletion, SyncSecureChatCompletion
from nomyo_native.errors import (
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
    UnsupportedContentEncodingError,
)
from nomyo_native.memory import (
    SecureBuffer,
    disable_secure_memory,
    enable_secure_memory,
    get_memory_protection_info,
    secure_bytearray,
    secure_bytes,
)

__version__: str = _core.__version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "ForbiddenError",
    "InsecureKeyFileError",
    "InvalidRequestError",
    "KeyLoadError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ResponseFormatError",
    "SecureBuffer",
    "SecureChatCompletion",
    "SecureCompletionClient",
    "SecurityError",
    "ServerError",
    "ServiceUnavailableError",
    "SyncSecureChatCompletion",
    "UnsupportedContentEncodingError",
    "__version__",
    "disable_secure_memory",
    "enable_secure_memory",
    "get_memory_protection_info",
    "secure_bytearray",
    "secure_bytes",
]
