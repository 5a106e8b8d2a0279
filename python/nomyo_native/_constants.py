"""The client's fixed values and defaults, in one place: the client, the chat API, the CLI,
attestation and enrollment read them from here, so a default changes everywhere at once.

The endpoint in ``server/`` keeps its own copies on purpose: it is an independent protocol
peer (DESIGN.md), and a wrong value shared by both sides would go unnoticed.
"""

from __future__ import annotations

from typing import Final

# ---- request options -------------------------------------------------------------------------

# The values of ``security_tier`` (sent as X-Security-Tier), weakest first.
SECURITY_TIERS: Final[tuple[str, ...]] = ("standard", "high", "maximum")
# The values of ``attestation=`` (README, "TPM attestation"), weakest first.
ATTESTATION_POLICIES: Final[tuple[str, ...]] = ("off", "auto", "bound", "require")

# ---- client defaults (those of nomyo 0.2.9 where it has one) ---------------------------------

DEFAULT_ROUTER_URL: Final = "https://api.nomyo.ai"
# Seconds for one whole request, as in nomyo 0.2.9 (a long completion can take minutes).
DEFAULT_TIMEOUT: Final = 900.0
# Retries after the first attempt, on 429/5xx and network errors.
DEFAULT_MAX_RETRIES: Final = 2
# Seconds before a client generating its own keys replaces them.
DEFAULT_KEY_ROTATION_INTERVAL: Final = 24 * 3600.0

# ---- wire paths (PROTOCOL.md) ----------------------------------------------------------------

PUBLIC_KEY_PATH: Final = "/pki/public_key"
COMPLETION_PATH: Final = "/v1/chat/secure_completion"
ENROLLMENT_PATH: Final = "/v1/attestation/enrollment"
ACTIVATE_PATH: Final = "/v1/attestation/activate"

# ---- files and environment -------------------------------------------------------------------

# A key directory's files, as nomyo 0.2.9 names them.
PRIVATE_KEY_FILE: Final = "private_key.pem"
PUBLIC_KEY_FILE: Final = "public_key.pem"
# Secrets are read from the environment, never from the command line.
API_KEY_ENV: Final = "NOMYO_API_KEY"
KEY_PASSWORD_ENV: Final = "NOMYO_KEY_PASSWORD"  # noqa: S105 (a variable name, not a password)
