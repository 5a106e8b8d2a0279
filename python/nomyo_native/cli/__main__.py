"""``python -m nomyo_native.cli``: the ``nomyo-native`` command."""

import sys

from nomyo_native.cli import main

sys.exit(main())
