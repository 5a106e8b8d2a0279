"""What this server process honestly does to protect memory (``_metadata.memory_protection``).

The endpoint is pure Python on pyca/cryptography: it cannot lock or reliably wipe the pages
that hold keys and plaintexts, so it says so. Core dumps are the one thing it can check.
"""

from __future__ import annotations

import sys
from typing import Any


def core_dumps_disabled() -> bool:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_CORE)
    return soft == 0


def disable_core_dumps() -> bool:
    """Set RLIMIT_CORE to 0 for this process (the CLI server does it; returns success)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        return False
    return True


def memory_protection() -> dict[str, Any]:
    return {
        "platform": sys.platform,
        "memory_locking": False,
        "secure_zeroing": False,
        "core_dump_prevention": core_dumps_disabled(),
    }
