"""Module path compatibility: ``from nomyo.SecureCompletionClient import ...`` in nomyo 0.2.9.

In nomyo, ``nomyo.SecureCompletionClient`` is this *module* (Python binds a package attribute to
a submodule of the same name when it is imported). So that ``nomyo_native.SecureCompletionClient``
also works as the class, this module is callable and answers ``isinstance``/``issubclass`` for
the class it holds.
"""

import sys
import types
from typing import Any

from nomyo_native.client import SecureCompletionClient
from nomyo_native.client import logger as logger  # nomyo.SecureCompletionClient.logger
from nomyo_native.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)
from nomyo_native.memory import _get_secure_memory as _get_secure_memory
from nomyo_native.memory import secure_bytearray as secure_bytearray

# nomyo 0.2.9 sets this when its SecureMemory module imports; ours always does.
_SECURE_MEMORY_AVAILABLE = True

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "ForbiddenError",
    "InvalidRequestError",
    "RateLimitError",
    "SecureCompletionClient",
    "SecurityError",
    "ServerError",
    "ServiceUnavailableError",
]


class _ClassLikeModule(types.ModuleType):
    """This module, standing in for the class when reached as a package attribute."""

    def __call__(self, *args: Any, **kwargs: Any) -> SecureCompletionClient:
        return SecureCompletionClient(*args, **kwargs)

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, SecureCompletionClient)

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, SecureCompletionClient)


sys.modules[__name__].__class__ = _ClassLikeModule
