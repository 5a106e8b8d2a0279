"""Module path compatibility: ``from nomyo.nomyo import SecureChatCompletion`` in nomyo 0.2.9."""

# nomyo 0.2.9's module binds its SecureMemory module as "_"; so does this one.
from nomyo_native import SecureMemory as _  # noqa: F401
from nomyo_native.chat import SecureChatCompletion
from nomyo_native.client import SecureCompletionClient

_SECURE_MEMORY_AVAILABLE = True

__all__ = ["SecureChatCompletion", "SecureCompletionClient"]
