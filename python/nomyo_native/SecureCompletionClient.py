"""Module path compatibility: ``from nomyo.SecureCompletionClient import ...`` in nomyo 0.2.9."""

from nomyo_native.client import SecureCompletionClient
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
