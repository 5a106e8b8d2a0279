"""Module path compatibility: ``from nomyo.SecureMemory import ...`` in nomyo 0.2.9."""

from nomyo_native.memory import (
    MemoryProtectionLevel,
    SecureBuffer,
    SecureMemory,
    disable_secure_memory,
    enable_secure_memory,
    get_memory_protection_info,
    secure_bytearray,
    secure_bytes,
)
from nomyo_native.memory import (
    _get_secure_memory as _get_secure_memory,
)

# Code that tunes nomyo's module logger (nomyo.SecureMemory.logger.setLevel) tunes ours.
from nomyo_native.memory import logger as logger

__all__ = [
    "MemoryProtectionLevel",
    "SecureBuffer",
    "SecureMemory",
    "disable_secure_memory",
    "enable_secure_memory",
    "get_memory_protection_info",
    "secure_bytearray",
    "secure_bytes",
]
