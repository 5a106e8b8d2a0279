"""Module path compatibility: ``from nomyo.SecureMemory import ...`` in nomyo 0.2.9."""

from nomyo_native.memory import (
    SecureBuffer,
    disable_secure_memory,
    enable_secure_memory,
    get_memory_protection_info,
    secure_bytearray,
    secure_bytes,
)

__all__ = [
    "SecureBuffer",
    "disable_secure_memory",
    "enable_secure_memory",
    "get_memory_protection_info",
    "secure_bytearray",
    "secure_bytes",
]
