"""TLS for reactdiff-room: load a certificate, or make a self-signed one for a LAN (the `cryptography` package).

Browsers give camera and mic only to https pages (and to http://localhost), so a room reached over a LAN
needs TLS. A self-signed certificate works once each participant accepts the browser's warning.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def load_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server SSLContext from PEM files; the error names the file that failed."""
    for path, what in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as err:
        raise ValueError(
            f"--tls-cert {cert} / --tls-key {key}: not a matching PEM certificate and key ({err})"
        ) from err
    return context


def self_signed_pem(hosts: list[str], days: int = 30) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a self-signed EC P-256 certificate valid for `hosts` (names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "reactdiff-room")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint (AA:BB:...) that participants can compare with what their browser shows."""
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def self_signed_context(hosts: list[str]) -> tuple[ssl.SSLContext, bytes]:
    """A server SSLContext with a fresh self-signed certificate, and that certificate (PEM)."""
    cert_pem, key_pem = self_signed_pem(hosts)
    with tempfile.TemporaryDirectory(prefix="reactdiff-room-tls-") as tmp:  # ssl loads chains from files only
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        return load_context(cert, key), cert_pem
