"""nomyo-native: a hardened, native-core drop-in for the ``nomyo`` client.

``import nomyo_native as nomyo``.
"""

from nomyo_native import _core

__version__: str = _core.__version__

__all__ = ["__version__"]
