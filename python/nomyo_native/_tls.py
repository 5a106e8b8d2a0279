"""The verifying ``SSLContext`` of a client: TLS verification is never off for https, as the
server key fetched over that connection is the trust anchor of every request. The default
trust store is httpx2's (SSL_CERT_FILE or SSL_CERT_DIR, else the OS store); ``ca_bundle=``
and ``verify=`` (a CA file or an ``SSLContext``) override it.

Which TLS runs: for a CA file or directory (``ca_bundle=``, ``verify=<path>``, the variables,
the Linux default store) a :class:`~nomyo_native._core_tls.CoreTlsContext`, on which the
drivers run the core's TLS (rustls); for a caller's own ``SSLContext`` and the macOS/Windows
OS store, the interpreter's OpenSSL, as for CA locations none of whose certificates the core
can use.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
import ssl

import httpx2

from nomyo_native._core_tls import CoreTlsContext, NoCoreAnchors
from nomyo_native.errors import SecurityError

__all__ = ["os_store_locations", "tls_context"]

logger = logging.getLogger("nomyo_native.client")

# The CA bundles httpcore2's default context falls back to on Linux when OpenSSL's compiled-in
# paths hold nothing (httpcore2._ssl.CA_FILE_CANDIDATES; a test keeps the two equal).
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)
_HASHED_NAME = re.compile(r"[0-9a-fA-F]{8}\.\d")


def tls_context(
    verify: bool | str | os.PathLike[str] | ssl.SSLContext,
    ca_bundle: str | os.PathLike[str] | None,
) -> ssl.SSLContext:
    """One verifying SSLContext per trust store and process (building one costs milliseconds);
    contexts are shareable."""
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
        # The file's identity in the cache key: a bundle replaced on disk is read again.
        info = os.stat(cafile)
        return _file_context(os.fspath(cafile), (info.st_ino, info.st_size, info.st_mtime_ns))
    cert_file = os.environ.get("SSL_CERT_FILE")
    if cert_file and not os.path.isfile(cert_file):
        # ssl's own error names neither the variable nor the path.
        raise FileNotFoundError(f"CA bundle not found: {cert_file} (named by SSL_CERT_FILE)")
    return _default_tls_context(cert_file, os.environ.get("SSL_CERT_DIR"))


def _verifying_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """The core's TLS trusting these CA locations; OpenSSL's alone if the core can use none of
    their certificates (they fail or pass verification there as they did before)."""
    try:
        return CoreTlsContext.from_locations(cafile, capath)
    except NoCoreAnchors:
        logger.debug(
            "no CA certificate usable by the core's TLS in %s; using OpenSSL's", cafile or capath
        )
        return ssl.create_default_context(cafile=cafile, capath=capath)


@functools.lru_cache(maxsize=8)
def _file_context(cafile: str, identity: tuple[int, int, int]) -> ssl.SSLContext:
    del identity  # the cache key
    return _verifying_context(cafile, None)


@functools.lru_cache(maxsize=4)
def _default_tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx2's default trust store (SSL_CERT_FILE, else SSL_CERT_DIR, else the OS store),
    built once per process: loading a CA bundle costs tens of milliseconds."""
    if cert_file:
        return _verifying_context(cert_file, None)
    if cert_dir:
        return _verifying_context(None, cert_dir)
    locations = os_store_locations()
    if locations is None:
        return httpx2.create_ssl_context()  # the OS's own store, through truststore
    return _verifying_context(*locations)


def os_store_locations() -> tuple[str | None, str | None] | None:
    """The CA file and directory httpcore2's default context loads on Linux: OpenSSL's
    compiled-in paths, else the first bundle of :data:`CA_FILE_CANDIDATES`. None on macOS and
    Windows (the OS verifies there, through truststore), and where none of them exists."""
    if platform.system() in ("Windows", "Darwin"):
        return None
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if capath and not cafile and not any(map(_HASHED_NAME.fullmatch, os.listdir(capath))):
        capath = None
    if not cafile and not capath:
        cafile = next(filter(os.path.isfile, CA_FILE_CANDIDATES), None)
    return None if cafile is None and capath is None else (cafile, capath)
