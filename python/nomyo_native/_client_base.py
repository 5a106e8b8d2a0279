"""What the async and the sync client share: every decision, no network I/O.

A client is this state (options, key ring and key lifecycle, server-key trust and cache,
attestation trust) plus a driver that moves bytes. The subclasses in ``client`` (async) and
``_sync_client`` (sync) run the same steps in the same order, each with its own way of
waiting: build with :meth:`_completion_headers`, send and judge each attempt with
:meth:`_judge_answer`/:meth:`_judge_failure`, finish with :meth:`_finish`.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from nomyo_native import _core, _protocol
from nomyo_native._attempt_decisions import AttemptDecisions, Edge
from nomyo_native._config import ClientOptions, Completed, attempt_deadline
from nomyo_native._constants import API_KEY_ENV
from nomyo_native._headers import validate_api_key, validate_payload_id
from nomyo_native._keygen import background_keygen_enabled
from nomyo_native._keyring import KeyRing
from nomyo_native._keys import KeyLifecycle, load_keypair
from nomyo_native._retry import RetryPolicy
from nomyo_native._trust import (
    AttestationTrust,
    ServerKeyTrust,
    check_transport_policy,
    enrolled_trusted_aik,
    normalize_fingerprint,
    re_enroll_hint,
    validate_attestation_policy,
    warn_plain_http,
)
from nomyo_native.attestation import prepare_baseline, resolve_policy, validate_trusted_aik
from nomyo_native.errors import ClientClosedError, SecurityError
from nomyo_native.types import ChatCompletion

if TYPE_CHECKING:
    pass

__all__ = ["Checked", "ClientBase", "Edge", "Sealer"]

# Seals the request for the server key it is given; called afresh for every attempt.
Sealer = Callable[[_core.ServerPublicKey], bytes]
# _check_request's "the caller seals the payload itself".
_SEALED: Any = object()


class Checked(NamedTuple):
    """A completion request's settings, checked: tier, bearer token, attestation policy."""

    tier: str | None
    bearer: str | None
    policy: str


logger = logging.getLogger("nomyo_native.client")


def _attestation_trust(options: ClientOptions, router_url: str, edge: Edge) -> AttestationTrust:
    """Checked now: a bad baseline or pin, or "require" with nothing to root a quote in, must
    fail here, not after a prompt was sent."""
    baseline = prepare_baseline(options.pcr_baseline) if options.pcr_baseline is not None else None
    trusted_aik = options.trusted_aik
    if trusted_aik is not None:
        validate_trusted_aik(trusted_aik)
    hint = None
    if options.aik_pin_file is not None:
        enrolled = edge.enrolled_aik(options.aik_pin_file, router_url)
        trusted_aik = enrolled_trusted_aik(enrolled, options.aik_pin_file, router_url, trusted_aik)
        hint = re_enroll_hint(options.aik_pin_file, edge.normalize_origin(router_url))
    if options.attestation is not None:
        validate_attestation_policy(options.attestation)
        resolve_policy(options.attestation, None, has_anchor=trusted_aik is not None)
    return AttestationTrust(
        options.attestation, baseline, trusted_aik, hint, bool(options.require_payload_echo)
    )


def _start_background_keygen(keys: KeyRing, options: ClientOptions) -> None:
    """No key source configured: the first pair is made while the application starts up (a
    sibling shares its original's ring, and so its pending pair)."""
    if (
        options._keyring is None
        and options.key_dir is None
        and background_keygen_enabled(options.background_keygen)
    ):
        keys.pregenerate(options.key_size)


class ClientBase(AttemptDecisions):
    """The state and decisions of one client for one base URL (see ``SecureCompletionClient``
    for the options)."""

    def _setup(self, options: ClientOptions, edge: Edge) -> None:
        url = edge.parse_router_url(options.router_url)
        self._edge = edge
        # What a send may raise that the client answers (see _after_failure).
        self._send_failures = (*edge.LOCAL_REFUSALS, *edge.NETWORK_FAILURES)
        options.check_numbers()
        self.router_url = url.url
        self._url = url
        self._shown_url = url.shown
        self.allow_http = options.allow_http
        self._lifecycle = KeyLifecycle(
            options.key_size,
            options.key_dir,
            options.key_password,
            options.key_rotation_dir,
            options.key_rotation_password,
        )
        self.api_key = validate_api_key(
            options.api_key if options.api_key is not None else os.environ.get(API_KEY_ENV)
        )
        self._deadline = attempt_deadline(options.timeout, options.deadline)
        self._ssl_context = (
            edge.tls_context(options.verify, options.ca_bundle) if url.https else None
        )
        fingerprint = options.server_key_fingerprint
        self._trust = ServerKeyTrust(
            url.url,
            url.shown,
            normalize_fingerprint(fingerprint) if fingerprint is not None else None,
            edge.pin_file(options.server_key_pin_file)
            if options.server_key_pin_file is not None
            else None,
        )
        self._attestation = _attestation_trust(options, url.url, edge)
        # What the client was given (informational: the policy in force is per request).
        self.attestation = options.attestation if options.attestation is not None else "auto"
        self._retry = RetryPolicy(
            options.max_retries, options.retry_backoff, options.max_backoff, options.max_retry_after
        )
        self._keys: KeyRing = (
            options._keyring
            if options._keyring is not None
            else KeyRing(options.key_rotation_interval, clock=options.clock)
        )
        self._server_key: _core.ServerPublicKey | None = None
        self._quoted_public_key: tuple[_core.ClientKeyPair, str] | None = None
        self._closed = False
        self._disposed = False
        # A sibling for another base_url gets these, with the prepared baseline.
        self._options = options
        warn_plain_http(url.https, self.allow_http)
        _start_background_keygen(self._keys, options)

    def _sibling_options(self, router_url: str) -> ClientOptions:
        """This client's options for another base URL: same key ring, TLS context and settings,
        but not the server-key pin, which belongs to this URL's server."""
        self._check_usable()
        options = self._options
        changes: dict[str, Any] = {
            "router_url": router_url,
            "server_key_fingerprint": None,
            "api_key": self.api_key,
            "pcr_baseline": self._attestation.pcr_baseline,
            "_keyring": self._keys,
        }
        if self._ssl_context is not None:
            changes.update(verify=self._ssl_context, ca_bundle=None)
        return ClientOptions(**{**options.__dict__, **changes})

    # ---- keys (blocking: key generation and file I/O) ----------------------------------------

    def generate_keys(
        self, save_to_file: bool = False, key_dir: str = "client_keys", password: str | None = None
    ) -> Completed[None]:
        """Generate a key pair in locked memory (optionally saved). Works plain or awaited."""
        self._check_usable()
        self._generate_and_install(save_to_file, key_dir, password)
        return Completed(None)

    def load_keys(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
    ) -> Completed[None]:
        """Load a key pair (password from ``password`` or ``NOMYO_KEY_PASSWORD``).
        Works plain or awaited."""
        self._check_usable()
        self._load_and_install(private_key_path, public_key_path, password)
        return Completed(None)

    def _generate_and_install(
        self, save_to_file: bool, key_dir: str | os.PathLike[str], password: str | None
    ) -> None:
        keypair = self._lifecycle.generate(key_dir if save_to_file else None, password)
        self._keys.install(keypair, rotatable=True)

    def _load_and_install(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None,
        password: str | None,
    ) -> None:
        keypair = load_keypair(private_key_path, public_key_path, password)
        self._keys.install(keypair, rotatable=False)

    def _refresh_keys(self) -> None:
        """Load or generate the pair on first use; rotate it when the interval has passed."""
        self._keys.refresh(self._first_keypair, self._lifecycle.rotated)

    def _first_keypair(self) -> _core.ClientKeyPair:
        pregenerated = self._keys.take_pregenerated(self._lifecycle.key_size)
        return pregenerated if pregenerated is not None else self._lifecycle.initial()

    def _keys_ready(self) -> bool:
        return self._keys.current is not None and not self._keys.rotation_due()

    # ---- server key --------------------------------------------------------------------------

    def _accept_server_key(self, body: bytes | bytearray | memoryview) -> _core.ServerPublicKey:
        """The server key from its answer, refused unless it is the pinned one."""
        key = _protocol.parse_server_key(bytes(body))
        self._trust.check_pin(key)
        return key

    def _cache_server_key(self, key: _core.ServerPublicKey) -> None:
        logger.debug("server key %s (%d bits) cached", key.fingerprint, key.bits)
        self._server_key = key

    def _check_pin_file(self, fingerprint: str) -> None:
        """Trust on first use: record the fingerprint, refuse a different one later."""
        self._trust.check_pin_file(fingerprint)

    # ---- requests and responses --------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._disposed:
            raise ClientClosedError("the client was disposed: its keys are wiped")
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _check_transport_policy(self) -> None:
        check_transport_policy(self._url.https, self.allow_http, self._shown_url)

    def _completion_headers(
        self, payload_id: str, keypair: _core.ClientKeyPair, bearer: str | None, tier: str | None
    ) -> dict[str, str]:
        # Percent-encoding a 4096-bit PEM costs more than the rest of the headers: once per key.
        cached = self._quoted_public_key
        if cached is None or cached[0] is not keypair:
            cached = (keypair, _protocol.quote_public_key(keypair))
            self._quoted_public_key = cached
        return _protocol.completion_headers(payload_id, cached[1], bearer, tier)

    def _check_request(
        self,
        payload_id: str,
        api_key: str | None,
        security_tier: str | None,
        attestation: str | None,
        payload: Any = _SEALED,
    ) -> Checked:
        """Everything about a completion request that can be refused before a byte is sent
        or sealed (a payload already sealed by the caller was checked by the core)."""
        self._check_usable()
        tier = _protocol.validate_security_tier(security_tier)
        bearer = validate_api_key(api_key) if api_key is not None else self.api_key
        validate_payload_id(payload_id)
        if payload is not _SEALED:
            _protocol.validate_payload(payload)
        return Checked(tier, bearer, self._policy_for(attestation, tier))

    def _policy_for(self, attestation: str | None, security_tier: str | None) -> str:
        return self._attestation.policy_for(attestation, security_tier)

    def _finish(
        self,
        response: dict[str, Any],
        payload_id: str,
        policy: str,
        tier: str | None,
        sealed_to: _core.ServerPublicKey | None,
        require_echo: bool | None = None,
    ) -> ChatCompletion:
        """The opened response once its ``_metadata`` passed the attestation policy and the
        binding check (else SecurityError). A refused answer is dropped and the frames below
        cleared before the refusal goes on (see ``_protocol._with_metadata``); callers pass
        the answer straight from its open, in no local of theirs."""
        metadata = response["_metadata"]
        try:
            self._attestation.judge(metadata, payload_id, policy, tier, sealed_to, require_echo)
        except BaseException as refusal:
            del response, metadata
            traceback.clear_frames(refusal.__traceback__)
            raise
        # The client built _metadata itself (open_response, judge); the rest is the server's
        # chat.completion, described as PROTOCOL.md section 3 defines it, not validated here.
        return cast(ChatCompletion, response)

    def _require_keypair(self) -> _core.ClientKeyPair:
        if self._keys.current is None:
            raise SecurityError(
                "Private key not initialized. Call generate_keys() or load_keys() first."
            )
        return self._keys.acquire()
