"""Module path compatibility: ``from nomyo.nomyo import SecureChatCompletion`` in nomyo 0.2.9."""

from nomyo_native.chat import SecureChatCompletion

__all__ = ["SecureChatCompletion"]
