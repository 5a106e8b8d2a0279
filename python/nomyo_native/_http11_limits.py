"""What a response's heads may cost before its body: the bytes of one head, and the interim
(1xx) responses skipped before the final one; past them the response is refused as malformed
(httpcore2's RemoteProtocolError, as for any other broken head)."""

from __future__ import annotations

import httpcore2

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_INTERIM_BYTES",
    "MAX_INTERIM_RESPONSES",
    "InterimResponses",
    "head_too_large",
]

# httpcore2's bound on an incomplete h11 event (a head still arriving).
MAX_HEAD_BYTES = 100 * 1024

# A server could send ``100 Continue`` forever and hold the request (and the CPU parsing each
# one) with no read ever waiting long enough to time out. Go's HTTP client refuses a sixth
# (``max1xxResponses = 5``); curl counts 1xx heads into the 300 KiB it allows for all of a
# response's heads together. A server sends one 100 or 103, maybe a second 103: ten, and 100 KiB
# of them together (with the final head's own bound, 200 KiB in all), is twice Go's bound and
# under curl's.
MAX_INTERIM_RESPONSES = 10
MAX_INTERIM_BYTES = 100 * 1024


def head_too_large() -> httpcore2.RemoteProtocolError:
    return httpcore2.RemoteProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")


class InterimResponses:
    """The interim responses one exchange has skipped (made at the first: most have none)."""

    __slots__ = ("count", "size")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0

    def skipped(self, size: int) -> None:
        """One more, its head ``size`` bytes: a RemoteProtocolError past either bound."""
        self.count += 1
        self.size += size
        if self.count > MAX_INTERIM_RESPONSES:
            raise httpcore2.RemoteProtocolError(
                f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
            )
        if self.size > MAX_INTERIM_BYTES:
            raise httpcore2.RemoteProtocolError(
                f"interim (1xx) responses larger than {MAX_INTERIM_BYTES} bytes together"
            )
