"""A Mosquitto that wants TLS, a client certificate and a password, as production does."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from provisioning.local_broker import free_port


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, subject: str, extension: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(extension + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=cwd)


def make_pki(directory: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a gateway client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=vitrina-test-ca", cwd=directory)
    _signed("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1", directory)
    _signed("gateway", "/CN=gw-1", "extendedKeyUsage=clientAuth", directory)
    return TlsFiles(directory / "ca.pem", directory / "gateway.pem", directory / "gateway.key")


def tls_broker_config(directory: Path, *, username: str, password: str) -> tuple[int, str]:
    """(port, mosquitto.conf text) for a TLS listener with client certs and passwords."""
    passwd = directory / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), username, password],
                   check=True, capture_output=True)
    port = free_port()
    text = "\n".join([
        "per_listener_settings true",
        f"listener {port} 127.0.0.1",
        f"cafile {directory / 'ca.pem'}",
        f"certfile {directory / 'server.pem'}",
        f"keyfile {directory / 'server.key'}",
        "require_certificate true",
        "allow_anonymous false",
        f"password_file {passwd}",
        "log_dest stderr",
        "log_type error",
        "",
    ])
    return port, text
