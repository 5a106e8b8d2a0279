"""The httpx transport (openai 2.x, which llama-index's OpenAI integrations still require).

The only module of nomyo_native that imports the old ``httpx``.
"""

from __future__ import annotations

import httpx

from nomyo_native.openai._flavor import Flavor, build

FLAVOR: Flavor = build(httpx)
