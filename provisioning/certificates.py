"""A private certificate authority for the broker's TLS listener (and gateway client certs).

A shop's gateways talk to one broker, so a private CA whose certificate is shipped in
each gateway's config bundle is simpler and safer than trusting the public web PKI:
a gateway then accepts exactly this broker and nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Ten years for the CA: it is pinned in every gateway's bundle, so rolling it is work.
CA_VALIDITY = dt.timedelta(days=3650)
#: Leaf certificates are cheap to reissue; two years stays within common client limits.
LEAF_VALIDITY = dt.timedelta(days=730)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key (P-256: small, fast on a Pi, widely supported)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, certificate_path: Path, key_path: Path) -> None:
        """The key for its owner alone; the certificate, which is public, for anyone, whatever
        the umask: services that run as users of their own (the orchestrator's containers)
        read the CA's."""
        certificate_path.write_bytes(self.certificate_pem())
        certificate_path.chmod(0o644)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Vitrina"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificate_authority(common_name: str = "Vitrina broker CA") -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(certificate, key)


def _subject_alternative_names(hostnames: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue_certificate(
    authority: KeyPair,
    *,
    common_name: str,
    hostnames: list[str] | None = None,
    client: bool = False,
) -> KeyPair:
    """A leaf certificate: a server one (with SANs for every name clients dial) or a
    client one (for gateways that authenticate with a certificate as well)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    if hostnames:
        builder = builder.add_extension(_subject_alternative_names(hostnames), critical=False)
    return KeyPair(builder.sign(authority.key, hashes.SHA256()), key)
