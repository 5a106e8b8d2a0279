"""Certificate chains with one property changed at a time, and a verdict from each TLS stack:
the core's session and the interpreter's OpenSSL, each as a client over memory BIOs against the
same OpenSSL server, trusting the same PEM bytes. For the review's trust-parity tests."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import sys
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from nomyo_native import _core

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
VALID = (NOW - DAY, NOW + 30 * DAY)
EXPIRED = (NOW - 30 * DAY, NOW - DAY)
NOT_YET = (NOW + DAY, NOW + 30 * DAY)

_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
_NO_CERT_SIGN = x509.KeyUsage(True, False, False, False, False, False, True, False, False)


@dataclass
class Spec:
    """One certificate of a chain: everything a test may change."""

    validity: tuple[datetime.datetime, datetime.datetime] = VALID
    ca: bool | None = True  # None: no basicConstraints at all
    path_length: int | None = None
    key_usage: x509.KeyUsage | None = _CA_USAGE
    eku: list[x509.ObjectIdentifier] | None = None
    name_constraints: x509.NameConstraints | None = None
    sans: list[x509.GeneralName] = field(default_factory=list)
    # Key identifiers other than the ones the keys give (None: from the subject's and the
    # issuer's keys).
    skid: x509.SubjectKeyIdentifier | None = None
    akid: x509.AuthorityKeyIdentifier | None = None
    critical: list[x509.ExtensionType] = field(default_factory=list)
    noncritical: list[x509.ExtensionType] = field(default_factory=list)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _build(
    spec: Spec,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    # Key identifiers on every certificate: OpenSSL's strict mode (create_default_context on
    # Python 3.13+) refuses a chain without them before anything the case is about.
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.validity[0])
        .not_valid_after(spec.validity[1])
        .add_extension(
            spec.skid or x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .add_extension(
            spec.akid
            or x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if spec.ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length if spec.ca else None),
            critical=True,
        )
    if spec.key_usage is not None:
        builder = builder.add_extension(spec.key_usage, critical=True)
    if spec.eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.eku), critical=False)
    if spec.name_constraints is not None:
        builder = builder.add_extension(spec.name_constraints, critical=True)
    if spec.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(spec.sans), critical=False)
    for extension in spec.critical:
        builder = builder.add_extension(extension, critical=True)
    for extension in spec.noncritical:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def leaf_spec(*hosts: str, **changes: object) -> Spec:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    spec = Spec(
        ca=False,
        key_usage=None,
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=names,
    )
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


@dataclass
class Chain:
    """Trust store PEM, and the server's chain file and key file."""

    store_pem: bytes
    cert_path: Path
    key_path: Path


def make_chain(
    directory: Path,
    root: Spec,
    intermediates: list[Spec],
    leaf: Spec,
    *,
    leaf_in_store: bool = False,
    store: str = "root",
    send_intermediates: bool = True,
) -> Chain:
    """root -> intermediates... -> leaf; the server sends leaf + intermediates (unless not
    ``send_intermediates``); the store holds the root (``store="root"``), the first
    intermediate alone ("intermediate"), or an impostor: another root of the same name and
    another key ("impostor"); with ``leaf_in_store``, the leaf too."""
    tag = uuid.uuid4().hex[:8]
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_cert = _build(root, f"review8 root {tag}", root_key, None)
    issuer = (root_cert.subject, root_key)
    sent: list[x509.Certificate] = []
    for index, spec in enumerate(intermediates):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build(spec, f"review8 intermediate {index} {tag}", key, issuer)
        sent.insert(0, cert)
        issuer = (cert.subject, key)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _build(leaf, f"review8 leaf {tag}", leaf_key, issuer)
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"chain-{tag}.pem", directory / f"key-{tag}.pem"
    served = [leaf_cert, *sent] if send_intermediates else [leaf_cert]
    cert_path.write_bytes(b"".join(c.public_bytes(pem) for c in served))
    key_path.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    if store == "intermediate":
        trusted = sent[-1]
    elif store == "impostor":
        impostor_key = ec.generate_private_key(ec.SECP256R1())
        trusted = _build(root, f"review8 root {tag}", impostor_key, None)
    else:
        trusted = root_cert
    store_pem = trusted.public_bytes(pem)
    if leaf_in_store:
        store_pem += leaf_cert.public_bytes(pem)
    return Chain(store_pem, cert_path, key_path)


def _pump_server(server: ssl.SSLObject, data: bytes) -> bytes:
    incoming, outgoing = _bios[id(server)]
    incoming.write(data)
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:
        pass
    return outgoing.read()


_bios: dict[int, tuple[ssl.MemoryBIO, ssl.MemoryBIO]] = {}


def _new_server(chain: Chain) -> ssl.SSLObject:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain.cert_path, chain.key_path)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    _bios[id(server)] = (incoming, outgoing)
    return server


# The core uses no certificate of the store: the client keeps OpenSSL for it
# (``_core_tls.NoCoreAnchors``), whose verdict is then the client's by construction.
NO_CORE_ANCHORS = "no core anchors"


def core_verdict(chain: Chain, host: str) -> str:
    """ "ok", or the core's refusal reason (TlsCertificateError.reason, or the TlsError text)."""
    try:
        config = _core.TlsConfig(chain.store_pem)
    except ValueError:
        return NO_CORE_ANCHORS
    session = _core.TlsSession(config, host)
    server = _new_server(chain)
    try:
        for _ in range(10):
            reply = _pump_server(server, session.take_tls())
            if reply:
                session.receive(reply)
            if not session.handshaking:
                return "ok"
    except _core.TlsCertificateError as exc:
        return exc.reason
    except _core.TlsError as exc:
        return f"TlsError: {exc}"
    finally:
        _bios.pop(id(server), None)
    raise AssertionError("the core's handshake did not finish")


def openssl_verdict(chain: Chain, host: str, directory: Path) -> str:
    """ "ok", or OpenSSL's verify message, for a client made as the OpenSSL path makes it
    (``ssl.create_default_context(cafile=...)``) trusting the same PEM."""
    store = directory / f"store-{uuid.uuid4().hex[:8]}.pem"
    store.write_bytes(chain.store_pem)
    context = ssl.create_default_context(cafile=str(store))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=host)
    server = _new_server(chain)
    try:
        for _ in range(10):
            try:
                client.do_handshake()
                return "ok"
            except ssl.SSLWantReadError:
                pass
            incoming.write(_pump_server(server, outgoing.read()))
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message)
    except ssl.SSLError as exc:
        return f"SSLError: {exc}"
    finally:
        _bios.pop(id(server), None)
    raise AssertionError("OpenSSL's handshake did not finish")


# ---- the cases ---------------------------------------------------------------------------------


def _nc(permitted: list[x509.GeneralName] | None, excluded: list[x509.GeneralName] | None):
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
_CERT_SIGN_ONLY = x509.KeyUsage(False, False, False, False, False, True, False, False, False)

# name -> (root, intermediates, leaf, host): cases both stacks refuse, or both accept.
AGREED: dict[str, tuple[Spec, list[Spec], Spec, str]] = {
    "a good chain": (Spec(), [], leaf_spec("localhost"), "localhost"),
    "a good chain through an intermediate": (Spec(), [Spec()], leaf_spec("localhost"), "localhost"),
    "a root's name constraints excluding the host": (
        Spec(name_constraints=_nc(None, [x509.DNSName("localhost")])),
        [],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an expired intermediate": (
        Spec(),
        [Spec(validity=EXPIRED)],
        leaf_spec("localhost"),
        "localhost",
    ),
    "a not yet valid intermediate": (
        Spec(),
        [Spec(validity=NOT_YET)],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate with CA:FALSE": (
        Spec(),
        [Spec(ca=False)],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate without basicConstraints": (
        Spec(),
        [Spec(ca=None)],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate for clientAuth only": (
        Spec(),
        [Spec(eku=[EKU.CLIENT_AUTH])],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate's excluded DNS subtree": (
        Spec(),
        [Spec(name_constraints=_nc(None, [x509.DNSName("localhost")]))],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate's permitted subtree elsewhere": (
        Spec(),
        [Spec(name_constraints=_nc([x509.DNSName("example.com")], None))],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate's excluded IP subtree": (
        Spec(),
        [Spec(name_constraints=_nc(None, [x509.IPAddress(ipaddress.ip_network("127.0.0.0/8"))]))],
        leaf_spec("127.0.0.1"),
        "127.0.0.1",
    ),
    "a leaf for clientAuth only": (
        Spec(),
        [],
        leaf_spec("localhost", eku=[EKU.CLIENT_AUTH]),
        "localhost",
    ),
    "a leaf without EKU": (Spec(), [], leaf_spec("localhost", eku=None), "localhost"),
    "a leaf for anyExtendedKeyUsage only": (
        Spec(),
        [],
        leaf_spec("localhost", eku=[_ANY_EKU]),
        "localhost",
    ),
    "an expired leaf": (Spec(), [], leaf_spec("localhost", validity=EXPIRED), "localhost"),
    "another host": (Spec(), [], leaf_spec("localhost"), "other.test"),
    "another IP": (Spec(), [], leaf_spec("127.0.0.1"), "127.0.0.2"),
    "an IP written as a DNS SAN": (
        Spec(),
        [],
        leaf_spec(sans=[x509.DNSName("127.0.0.1")]),
        "127.0.0.1",
    ),
    "a DNS name against an IP SAN": (Spec(), [], leaf_spec("127.0.0.1"), "localhost"),
    "a wildcard for one label": (Spec(), [], leaf_spec("*.example.test"), "a.example.test"),
    "a wildcard for two labels": (Spec(), [], leaf_spec("*.example.test"), "a.b.example.test"),
    "a wildcard for its bare domain": (Spec(), [], leaf_spec("*.example.test"), "example.test"),
    "a partial-label wildcard": (Spec(), [], leaf_spec("a*.example.test"), "ab.example.test"),
    "a wildcard under a TLD": (Spec(), [], leaf_spec("*.test"), "example.test"),
    "a wildcard against an IP": (
        Spec(),
        [],
        leaf_spec(sans=[x509.DNSName("*.0.0.1")]),
        "127.0.0.1",
    ),
    "a host name in capitals": (Spec(), [], leaf_spec("localhost"), "LOCALHOST"),
}


def _ip(address: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(address))


# Name forms at the edges: IPv4-mapped IPv6, a SAN's trailing dot or capitals, bare or empty
# wildcards, wildcards over IDN A-labels.
AGREED.update(
    {
        "an IPv4-mapped SAN for an IPv4 host": (
            Spec(), [], leaf_spec(sans=[_ip("::ffff:127.0.0.1")]), "127.0.0.1",
        ),
        "an IPv4 SAN for an IPv4-mapped host": (
            Spec(), [], leaf_spec(sans=[_ip("127.0.0.1")]), "::ffff:127.0.0.1",
        ),
        "an IPv6 SAN": (Spec(), [], leaf_spec(sans=[_ip("::1")]), "::1"),
        "a SAN with a trailing dot": (
            Spec(), [], leaf_spec(sans=[x509.DNSName("localhost.")]), "localhost",
        ),
        "a SAN in capitals": (Spec(), [], leaf_spec(sans=[x509.DNSName("LOCALHOST")]), "localhost"),
        "a bare * SAN": (Spec(), [], leaf_spec(sans=[x509.DNSName("*")]), "localhost"),
        "an empty SAN": (Spec(), [], leaf_spec(sans=[x509.DNSName("")]), "localhost"),
        "an IDN A-label": (
            Spec(), [], leaf_spec("xn--bcher-kva.example"), "xn--bcher-kva.example",
        ),
        "a wildcard over an IDN A-label": (
            Spec(), [], leaf_spec("*.example"), "xn--bcher-kva.example",
        ),
        "a wildcard inside an A-label": (
            Spec(), [], leaf_spec("xn--*.example"), "xn--bcher-kva.example",
        ),
    }
)  # fmt: skip

# Cases OpenSSL refuses and the core (webpki) accepts: webpki takes from a trust anchor only its
# subject, key and name constraints, and reads no keyUsage anywhere.
LOOSER: dict[str, tuple[Spec, list[Spec], Spec, str]] = {
    "an expired root": (Spec(validity=EXPIRED), [], leaf_spec("localhost"), "localhost"),
    "a not yet valid root": (Spec(validity=NOT_YET), [], leaf_spec("localhost"), "localhost"),
    "a root with CA:FALSE": (Spec(ca=False), [], leaf_spec("localhost"), "localhost"),
    "a root without keyCertSign": (
        Spec(key_usage=_NO_CERT_SIGN),
        [],
        leaf_spec("localhost"),
        "localhost",
    ),
    "a root for clientAuth only": (
        Spec(eku=[EKU.CLIENT_AUTH]),
        [],
        leaf_spec("localhost"),
        "localhost",
    ),
    "a root's path length 0 with an intermediate": (
        Spec(path_length=0),
        [Spec()],
        leaf_spec("localhost"),
        "localhost",
    ),
    "an intermediate without keyCertSign": (
        Spec(),
        [Spec(key_usage=_NO_CERT_SIGN)],
        leaf_spec("localhost"),
        "localhost",
    ),
    "a leaf whose keyUsage is keyCertSign only": (
        Spec(),
        [],
        leaf_spec("localhost", key_usage=_CERT_SIGN_ONLY),
        "localhost",
    ),
}


def _netscape_type(bits: int) -> x509.UnrecognizedExtension:
    """A Netscape certificate type (nsCertType) of one byte of ``bits``."""
    oid = x509.ObjectIdentifier("2.16.840.1.113730.1.1")
    return x509.UnrecognizedExtension(oid, bytes([0x03, 0x02, 0x00, bits]))


_NS_OBJECT_SIGNING, _NS_SSL_SERVER = 0x10, 0x40
_SERVER_GATED_CRYPTO = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")

# OpenSSL's TLS server purpose: a CA's EKU must hold serverAuth or Server Gated Crypto
# (anyExtendedKeyUsage alone is not enough), a leaf's nsCertType (if any) the SSL server bit.
LOOSER["a root for anyExtendedKeyUsage only"] = (
    Spec(eku=[_ANY_EKU]),
    [],
    leaf_spec("localhost"),
    "localhost",
)
LOOSER["a leaf whose nsCertType is object signing only"] = (
    Spec(),
    [],
    leaf_spec("localhost", noncritical=[_netscape_type(_NS_OBJECT_SIGNING)]),
    "localhost",
)
AGREED["a root for Server Gated Crypto only"] = (
    Spec(eku=[_SERVER_GATED_CRYPTO]),
    [],
    leaf_spec("localhost"),
    "localhost",
)
AGREED["a leaf whose nsCertType is SSL server"] = (
    Spec(),
    [],
    leaf_spec("localhost", noncritical=[_netscape_type(_NS_SSL_SERVER)]),
    "localhost",
)


# A v3 root without basicConstraints: OpenSSL takes it for a CA, except in its strict mode
# (create_default_context on Python 3.13+); webpki always does.
_NO_BC_ROOT = (Spec(ca=None), [], leaf_spec("localhost"), "localhost")
(LOOSER if sys.version_info >= (3, 13) else AGREED)["a root without basicConstraints"] = _NO_BC_ROOT


# Chain shapes: which certificate the store holds, what the server sends.
CHAIN_OPTIONS: dict[str, dict[str, object]] = {
    "an impostor root of the same name in the store": {"store": "impostor"},
    "an impostor root of the same name, through an intermediate": {"store": "impostor"},
    "an intermediate the server does not send": {"send_intermediates": False},
    "an intermediate alone in the store": {"store": "intermediate"},
}
AGREED["an impostor root of the same name in the store"] = (
    Spec(),
    [],
    leaf_spec("localhost"),
    "localhost",
)
AGREED["an impostor root of the same name, through an intermediate"] = (
    Spec(),
    [Spec()],
    leaf_spec("localhost"),
    "localhost",
)
AGREED["an intermediate the server does not send"] = (
    Spec(),
    [Spec()],
    leaf_spec("localhost"),
    "localhost",
)
# The store holds an intermediate, not its root: OpenSSL ends a chain only at a self-signed
# certificate, except with VERIFY_X509_PARTIAL_CHAIN (create_default_context on Python
# 3.13+); webpki takes any certificate of the store as an anchor.
_PARTIAL = (Spec(), [Spec()], leaf_spec("localhost"), "localhost")
# The core refuses such a chain whatever the Python (as OpenSSL without partial chains): on
# 3.13+ it is stricter than OpenSSL there, which no test of equality can hold.
if sys.version_info < (3, 13):
    LOOSER["an intermediate alone in the store"] = _PARTIAL


def _chain(
    case: str, table: dict[str, tuple[Spec, list[Spec], Spec, str]], tmp_path: Path
) -> Chain:
    root, intermediates, leaf, _ = table[case]
    return make_chain(tmp_path, root, intermediates, leaf, **CHAIN_OPTIONS.get(case, {}))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(AGREED))
def test_the_core_decides_as_openssl(case: str, tmp_path: Path) -> None:
    host = AGREED[case][3]
    chain = _chain(case, AGREED, tmp_path)
    openssl, core = openssl_verdict(chain, host, tmp_path), core_verdict(chain, host)
    if case.startswith("a good chain"):
        assert core == "ok", core  # a plain CA is the core's anchor, no fallback
    if core != NO_CORE_ANCHORS:
        assert (core == "ok") == (openssl == "ok"), (core, openssl)


@pytest.mark.parametrize("case", sorted(LOOSER))
def test_openssl_refuses_the_looser_cases(case: str, tmp_path: Path) -> None:
    host = LOOSER[case][3]
    chain = _chain(case, LOOSER, tmp_path)
    assert openssl_verdict(chain, host, tmp_path) != "ok"


# The looser cases the core still accepts: each strict xfail turns into a failure the day the
# core refuses that case, and is then taken out of this set.
# A v3 root without basicConstraints: refused by OpenSSL's strict mode (3.13+) only, still
# accepted by the core.
STILL_ACCEPTED: set[str] = (
    {"a root without basicConstraints"} if sys.version_info >= (3, 13) else set()
)


def _looser_case(case: str) -> object:
    if case not in STILL_ACCEPTED:
        return case
    reason = (
        "review8: webpki ignores a trust anchor's validity, basicConstraints, keyUsage, EKU and "
        "path length, and keyUsage everywhere; OpenSSL refuses this chain"
    )
    return pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=reason))


@pytest.mark.parametrize("case", [_looser_case(case) for case in sorted(LOOSER)])
def test_the_core_never_accepts_what_openssl_refuses(case: str, tmp_path: Path) -> None:
    host = LOOSER[case][3]
    chain = _chain(case, LOOSER, tmp_path)
    assert core_verdict(chain, host) != "ok"


# ---- the path checked is the path verified -----------------------------------------------------
# A server chooses what it sends: a decoy of an issuer's name (another key) must not stand in for
# the certificate that signed; nor may one trust anchor for another of its name, nor a root of a
# non-root anchor's issuer name that did not sign it. OpenSSL takes as a certificate's issuer
# only one whose key signed it; the core checks the path webpki verified.


@dataclass
class PathCase:
    """A store, what the server sends (leaf first) and the leaf's key; ``accepted``: OpenSSL's
    verdict without partial chains (Python < 3.13), and the core's on every Python."""

    slug: str
    store: list[x509.Certificate]
    served: list[x509.Certificate]
    leaf_key: ec.EllipticCurvePrivateKey
    accepted: bool
    # OpenSSL with VERIFY_X509_PARTIAL_CHAIN (3.13+) ends the chain at the anchor itself.
    partial_chain_accepts: bool = False

    def chain(self, directory: Path) -> Chain:
        pem = serialization.Encoding.PEM
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{self.slug}.pem", directory / f"{self.slug}-key.pem"
        cert_path.write_bytes(b"".join(c.public_bytes(pem) for c in self.served))
        key_path.write_bytes(
            self.leaf_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return Chain(b"".join(c.public_bytes(pem) for c in self.store), cert_path, key_path)


_Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(spec: Spec, subject: str, issuer: _Issuer | None) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (issuer[0].subject, issuer[1]) if issuer is not None else None
    return _build(spec, subject, key, signer), key


def _decoy_cases(ca: Spec, no_cert_sign: Spec, leaf: Spec, tag: str) -> dict[str, PathCase]:
    root = _issue(ca, f"paths root {tag}", None)
    cases: dict[str, PathCase] = {}
    for decoy_first in (True, False):
        where = "before" if decoy_first else "after"
        for real_spec, decoy_spec, accepted in (
            (ca, no_cert_sign, True),
            (no_cert_sign, ca, False),
        ):
            name = f"paths intermediate {tag} {where} {accepted}"
            real, decoy = _issue(real_spec, name, root), _issue(decoy_spec, name, root)
            leaf_cert, leaf_key = _issue(leaf, "localhost", real)
            sent = [decoy[0], real[0]] if decoy_first else [real[0], decoy[0]]
            kind = "without keyCertSign" if accepted else "with keyCertSign, the real one without"
            case = f"a decoy intermediate {kind}, {where} the real issuer"
            slug = f"decoy-{'bad' if accepted else 'good'}-{where}"
            cases[case] = PathCase(slug, [root[0]], [leaf_cert, *sent], leaf_key, accepted)
    return cases


def _path_length_cases(
    validity: tuple[datetime.datetime, datetime.datetime], leaf: Spec, tag: str
) -> dict[str, PathCase]:
    ca = Spec(validity=validity)
    root = _issue(Spec(validity=validity, path_length=1), f"paths pathLen root {tag}", None)
    upper = _issue(ca, f"paths upper {tag}", root)
    cases: dict[str, PathCase] = {}
    # The real issuer two below the root, a decoy of its name one below: refused (depth 2).
    name = f"paths lower {tag} deep"
    real, decoy = _issue(ca, name, upper), _issue(ca, name, root)
    leaf_cert, leaf_key = _issue(leaf, "localhost", real)
    cases["a root's pathLen 1 over a real path of 2, a decoy's of 1"] = PathCase(
        "pathlen-real-deep", [root[0]], [leaf_cert, decoy[0], real[0], upper[0]], leaf_key, False
    )
    # The real issuer one below the root, a decoy of its name two below: accepted (depth 1).
    name = f"paths lower {tag} shallow"
    real, decoy = _issue(ca, name, root), _issue(ca, name, upper)
    leaf_cert, leaf_key = _issue(leaf, "localhost", real)
    cases["a root's pathLen 1 over a real path of 1, a decoy's of 2"] = PathCase(
        "pathlen-real-shallow", [root[0]], [leaf_cert, decoy[0], upper[0], real[0]], leaf_key, True
    )
    return cases


def _anchor_cases(ca: Spec, no_cert_sign: Spec, leaf: Spec, tag: str) -> dict[str, PathCase]:
    cases: dict[str, PathCase] = {}
    for good_first in (True, False):
        order = "the good one first" if good_first else "the bad one first"
        for good_signs in (True, False):
            name = f"paths twin root {tag} {good_first} {good_signs}"
            good, bad = _issue(ca, name, None), _issue(no_cert_sign, name, None)
            leaf_cert, leaf_key = _issue(leaf, "localhost", good if good_signs else bad)
            store = [good[0], bad[0]] if good_first else [bad[0], good[0]]
            signer = "good" if good_signs else "bad"
            case = f"two roots of one name, the {signer} one signs, {order} in the store"
            slug = f"twin-roots-{signer}-signs-{'good' if good_first else 'bad'}-first"
            cases[case] = PathCase(slug, store, [leaf_cert], leaf_key, good_signs)
    # A non-root anchor, and a root of its issuer's name that did not sign it (another key).
    root = _issue(ca, f"paths anchor root {tag}", None)
    other_root = _issue(ca, f"paths anchor root {tag}", None)
    middle = _issue(ca, f"paths anchor {tag}", root)
    leaf_cert, leaf_key = _issue(leaf, "localhost", middle)
    cases["a non-root anchor, a root of its issuer's name that did not sign it"] = PathCase(
        "nonroot-anchor-wrong-root",
        [middle[0], other_root[0]],
        [leaf_cert],
        leaf_key,
        False,
        partial_chain_accepts=True,
    )
    cases["a non-root anchor, its real root after one that did not sign it"] = PathCase(
        "nonroot-anchor-real-root-after",
        [middle[0], other_root[0], root[0]],
        [leaf_cert],
        leaf_key,
        True,
    )
    return cases


def _akid(
    issuer: _Issuer, *, key_id: bool = True, serial: int | None = None, name: str | None = None
) -> x509.AuthorityKeyIdentifier:
    """An authorityKeyIdentifier for ``issuer``: its key id (or none), and if given a serial and
    an issuer name in its place (OpenSSL compares them with the issuer's serial and own issuer)."""
    key_identifier = x509.SubjectKeyIdentifier.from_public_key(issuer[1].public_key()).digest
    names = [x509.DirectoryName(_name(name))] if name is not None else None
    return x509.AuthorityKeyIdentifier(key_identifier if key_id else None, names, serial)


_OTHER_KEY_ID = x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)


def _akid_cases(ca: Spec, leaf: Spec, tag: str) -> dict[str, PathCase]:
    root_name = f"paths akid root {tag}"
    root = _issue(ca, root_name, None)
    serial, own = root[0].serial_number, root_name  # a self-signed root is its own issuer
    leaves: dict[str, tuple[str, x509.AuthorityKeyIdentifier, bool]] = {
        "a leaf's AKID naming another key": ("akid-other-key", _OTHER_KEY_ID, False),
        "a leaf's AKID naming another serial": (
            "akid-other-serial",
            _akid(root, serial=serial + 1, name=own),
            False,
        ),
        "a leaf's AKID naming another issuer name": (
            "akid-other-name",
            _akid(root, key_id=False, serial=serial, name="elsewhere"),
            False,
        ),
        "a leaf's AKID with its issuer's key id, serial and name": (
            "akid-all-right",
            _akid(root, serial=serial, name=own),
            True,
        ),
    }
    cases: dict[str, PathCase] = {}
    for case, (slug, akid, accepted) in leaves.items():
        leaf_cert, leaf_key = _issue(replace(leaf, akid=akid), "localhost", root)
        cases[case] = PathCase(slug, [root[0]], [leaf_cert], leaf_key, accepted)
    # Under an intermediate: the leaf's AKID is compared with the intermediate.
    middle = _issue(ca, f"paths akid intermediate {tag}", root)
    leaf_cert, leaf_key = _issue(replace(leaf, akid=_OTHER_KEY_ID), "localhost", middle)
    cases["a leaf's AKID naming another key than its intermediate's"] = PathCase(
        "akid-other-key-under-intermediate", [root[0]], [leaf_cert, middle[0]], leaf_key, False
    )
    # Two intermediates of one name and key, the first with another SKID: OpenSSL passes it by
    # for the second, and so must the core.
    twin_name, twin_key = f"paths akid twin {tag}", ec.generate_private_key(ec.SECP256R1())
    other_skid = x509.SubjectKeyIdentifier(b"\x02" * 20)
    decoy = _build(replace(ca, skid=other_skid), twin_name, twin_key, (root[0].subject, root[1]))
    real = _build(ca, twin_name, twin_key, (root[0].subject, root[1]))
    leaf_cert, leaf_key = _issue(leaf, "localhost", (real, twin_key))
    cases["two intermediates of one name and key, the first with another SKID"] = PathCase(
        "akid-twin-intermediates", [root[0]], [leaf_cert, decoy, real], leaf_key, True
    )
    # A non-root anchor whose AKID names another key than its root's, which did sign it.
    anchor = _issue(replace(ca, akid=_OTHER_KEY_ID), f"paths akid anchor {tag}", root)
    leaf_cert, leaf_key = _issue(leaf, "localhost", anchor)
    cases["a non-root anchor whose AKID names another key than its root's"] = PathCase(
        "akid-nonroot-anchor-other-key",
        [anchor[0], root[0]],
        [leaf_cert],
        leaf_key,
        False,
        partial_chain_accepts=True,
    )
    return cases


_UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
_ISSUER_ALT_NAME = x509.IssuerAlternativeName([x509.DNSName("ca.example.test")])
_CRL_POINTS = x509.CRLDistributionPoints(
    [x509.DistributionPoint([x509.UniformResourceIdentifier("http://ca.test/c.crl")], *[None] * 3)]
)


def _critical_cases(ca: Spec, leaf: Spec, tag: str) -> dict[str, PathCase]:
    """Critical extensions OpenSSL does not handle, on each certificate of a chain (webpki
    ignores every extension of a trust anchor), and one it handles."""
    cases: dict[str, PathCase] = {}
    on_root = {
        "an unknown critical extension": ("critical-unknown-root", _UNKNOWN, False),
        "a critical issuerAltName": ("critical-ian-root", _ISSUER_ALT_NAME, False),
        "a critical cRLDistributionPoints": ("critical-crldp-root", _CRL_POINTS, True),
    }
    for what, (slug, extension, accepted) in on_root.items():
        root = _issue(replace(ca, critical=[extension]), f"paths critical {slug} {tag}", None)
        leaf_cert, leaf_key = _issue(leaf, "localhost", root)
        cases[f"a root with {what}"] = PathCase(slug, [root[0]], [leaf_cert], leaf_key, accepted)
    root = _issue(ca, f"paths critical root {tag}", None)
    middle = _issue(replace(ca, critical=[_ISSUER_ALT_NAME]), f"paths critical ian {tag}", root)
    leaf_cert, leaf_key = _issue(leaf, "localhost", middle)
    cases["an intermediate with a critical issuerAltName"] = PathCase(
        "critical-ian-intermediate", [root[0]], [leaf_cert, middle[0]], leaf_key, False
    )
    leaf_cert, leaf_key = _issue(replace(leaf, critical=[_ISSUER_ALT_NAME]), "localhost", root)
    cases["a leaf with a critical issuerAltName"] = PathCase(
        "critical-ian-leaf", [root[0]], [leaf_cert], leaf_key, False
    )
    return cases


def path_cases(validity: tuple[datetime.datetime, datetime.datetime]) -> dict[str, PathCase]:
    """Every case, its certificates valid over ``validity`` (the Rust unit tests' fixtures are
    these cases over fixed dates: rust/tests/tls_parity/make_fixtures.py)."""
    tag = uuid.uuid4().hex[:8]
    ca = Spec(validity=validity)
    no_cert_sign = Spec(validity=validity, key_usage=_NO_CERT_SIGN)
    leaf = leaf_spec("localhost", validity=validity)
    return {
        **_decoy_cases(ca, no_cert_sign, leaf, tag),
        **_path_length_cases(validity, leaf, tag),
        **_anchor_cases(ca, no_cert_sign, leaf, tag),
        **_akid_cases(ca, leaf, tag),
        **_critical_cases(ca, leaf, tag),
    }


PATH_CASES = path_cases(VALID)


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_the_core_checks_the_path_it_verified(case: str, tmp_path: Path) -> None:
    path_case = PATH_CASES[case]
    chain = path_case.chain(tmp_path)
    openssl, core = openssl_verdict(chain, "localhost", tmp_path), core_verdict(chain, "localhost")
    partial = sys.version_info >= (3, 13) and path_case.partial_chain_accepts
    assert (openssl == "ok") == (path_case.accepted or partial), openssl
    assert (core == "ok") == path_case.accepted, core
