"""Throw-away certificate authorities and server certificates for the TLS tests.

Made with the `cryptography` package in the test's tmp folder: a CA (the
`sip.tls_ca` a deployment would configure) and leaf certificates it signs
for given IP addresses and DNS names. Nothing here is ever trusted outside
the test that made it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "Leaf", "new_authority"]

_DAY = dt.timedelta(days=1)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Leaf:
    certificate: Path  # PEM certificate
    key: Path  # PEM key
    bundle: Path  # certificate then key, in one file (baresip's sip_certificate)


@dataclass(frozen=True)
class Authority:
    name: str
    certificate: Path  # PEM, what `sip.tls_ca` points at
    key: ec.EllipticCurvePrivateKey
    subject: x509.Name

    def issue(
        self, directory: Path, name: str, *, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
    ) -> Leaf:
        """A server certificate for `ips`/`dns` (subjectAltName), signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        alt += [x509.DNSName(d) for d in dns]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 2 * _DAY)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Python 3.13's default context is X509-strict: a leaf needs its AKI.
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        leaf = Leaf(
            certificate=directory / f"{name}.crt",
            key=directory / f"{name}.key",
            bundle=directory / f"{name}.pem",
        )
        leaf.certificate.write_bytes(cert_pem)
        leaf.key.write_bytes(_pem_key(key))
        leaf.bundle.write_bytes(cert_pem + _pem_key(key))
        return leaf


def new_authority(directory: Path, name: str = "test-ca") -> Authority:
    """A self-signed CA whose certificate is written to `directory`/`name`.crt."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"callcenter112 {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 2 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name=name, certificate=path, key=key, subject=subject)
