"""Response bodies as wire bytes only: no content decoder ever runs, nothing beyond a cap.

httpx2 decodes any ``Content-Encoding`` a server names, chains such as ``gzip, gzip`` included,
and each raw chunk is inflated whole before a caller sees it: 1.8 KB of nested gzip becomes
gigabytes before any size check could run. The client therefore asks for ``identity``, reads
the raw stream, and refuses a response that names any other coding.
"""

from __future__ import annotations

import httpx2

from nomyo_native.errors import ResponseFormatError, UnsupportedContentEncodingError

__all__ = ["IDENTITY_ENCODING", "read_raw_capped", "refuse_encoded", "refused_codings"]

# Sent with every request: we accept no content coding at all.
IDENTITY_ENCODING = {"Accept-Encoding": "identity"}


def refused_codings(headers: httpx2.Headers) -> list[str]:
    """Every content coding named by the response other than ``identity`` (in order).

    Each ``Content-Encoding`` field may list several codings, and a response may repeat the
    field; all of them count.
    """
    refused: list[str] = []
    for value in headers.get_list("content-encoding"):
        for token in value.split(","):
            coding = token.strip().lower()
            if coding and coding != "identity":
                refused.append(coding)
    return refused


# The registered content codings (IANA HTTP Content Coding Registry): only these are named in
# a message. Anything else in the header is the server's own text, and no header value is ever
# quoted in an exception or log.
_REGISTERED_CODINGS = frozenset(
    {"aes128gcm", "br", "compress", "dcb", "dcz", "deflate", "exi", "gzip", "pack200-gzip"}
    | {"x-compress", "x-gzip", "zstd"}
)


def refuse_encoded(codings: list[str]) -> UnsupportedContentEncodingError:
    named = [c if c in _REGISTERED_CODINGS else "an unregistered coding" for c in codings[:4]]
    shown = ", ".join(dict.fromkeys(named))
    return UnsupportedContentEncodingError(
        f"the server compressed its response (Content-Encoding {shown}); this client accepts "
        "only uncompressed responses (it sends Accept-Encoding: identity) and decodes nothing"
    )


async def read_raw_capped(response: httpx2.Response, cap: int) -> bytes:
    """The body exactly as it came off the wire, refused once it exceeds ``cap`` bytes.

    A declared ``Content-Length`` above the cap is refused before anything is read; otherwise
    at most ``cap`` bytes plus one network read are ever held.
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise ResponseFormatError(f"response body larger than {cap} bytes refused")
    if response.is_stream_consumed:
        # Built in memory by a custom transport (httpx2.Response(content=...)): the body is
        # already there, and with no coding besides identity it is the wire bytes.
        if len(response.content) > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        return response.content
    # Chunks joined once at the end: a growing bytearray copied into bytes would copy a
    # megabyte envelope two or three times on the hot path.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        chunks.append(chunk)
    return b"".join(chunks)
