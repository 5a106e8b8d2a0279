"""The verifying ``SSLContext`` of a client: TLS verification is never off for https, as the
server key fetched over that connection is the trust anchor of every request. The default
trust store is httpx2's (SSL_CERT_FILE or SSL_CERT_DIR, else the OS store); ``ca_bundle=``
and ``verify=`` (a CA file or an ``SSLContext``) override it."""

from __future__ import annotations

import functools
import os
import ssl

import httpx2

from nomyo_native.errors import SecurityError

__all__ = ["tls_context"]


def tls_context(
    verify: bool | str | os.PathLike[str] | ssl.SSLContext,
    ca_bundle: str | os.PathLike[str] | None,
) -> ssl.SSLContext:
    """One verifying SSLContext per client (building one costs milliseconds)."""
    if verify is False:
        raise SecurityError(
            "TLS certificate verification cannot be disabled: the server key fetched over this "
            "connection is the trust anchor. Pass ca_bundle= with your CA instead."
        )
    if isinstance(verify, ssl.SSLContext):
        if verify.verify_mode != ssl.CERT_REQUIRED or not verify.check_hostname:
            raise SecurityError(
                "the SSLContext passed as verify= must require certificates and check hostnames"
            )
        return verify
    cafile = ca_bundle if ca_bundle is not None else (None if verify is True else verify)
    if cafile is not None:
        if not os.path.exists(cafile):
            raise FileNotFoundError(f"CA bundle not found: {os.fspath(cafile)}")
        return ssl.create_default_context(cafile=os.fspath(cafile))
    cert_file = os.environ.get("SSL_CERT_FILE")
    if cert_file and not os.path.isfile(cert_file):
        # ssl's own error names neither the variable nor the path.
        raise FileNotFoundError(f"CA bundle not found: {cert_file} (named by SSL_CERT_FILE)")
    return _default_tls_context(cert_file, os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _default_tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx2's default trust store (SSL_CERT_FILE or SSL_CERT_DIR, else the OS store), built
    once per process: loading a CA bundle costs tens of milliseconds, and contexts are
    shareable."""
    del cert_file, cert_dir  # the cache key: httpx2 reads the same variables
    return httpx2.create_ssl_context()
