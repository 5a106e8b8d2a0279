"""The httpx2 transport (openai 3.x and every library on it)."""

from __future__ import annotations

import httpx2

from nomyo_native.openai._flavor import Flavor, build

FLAVOR: Flavor = build(httpx2)
