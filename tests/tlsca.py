"""A private certificate authority for TLS tests, made with the openssl command: a CA,
a server certificate for 127.0.0.1 / localhost / broker.test, a client certificate,
and a second CA that signed neither (the wrong CA). Files are readable by the
`mosquitto` and `postgres` users the servers run as when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("127.0.0.1", "localhost", "broker.test")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key_and_csr(d: Path, name: str, subject: str) -> None:
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=d)  # fmt: skip


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=gz-infra-ingest test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=d)  # fmt: skip


def _sign(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
             cwd=d)  # fmt: skip


@dataclass(frozen=True)
class PrivateCA:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def wrong_ca(self) -> Path:
        return self.dir / "wrong.crt"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    def key_for(self, user: str, key: Path) -> Path:
        """A copy of `key` owned by `user` with mode 0600, as PostgreSQL insists."""
        copy = self.dir / f"{key.stem}.{user}{key.suffix}"
        shutil.copyfile(key, copy)
        copy.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(copy, user)
        return copy


def make_ca(d: Path, client_cn: str = "postgres") -> PrivateCA:
    """CA, server certificate (for SERVER_NAMES) and client certificate (CN
    `client_cn`: PostgreSQL's cert authentication takes the user name from it)."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "wrong")
    _key_and_csr(d, "server", "/CN=gz-infra-ingest test server")
    sans = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in SERVER_NAMES)
    _sign(d, "server", "ca", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    _key_and_csr(d, "client", f"/CN={client_cn}")
    _sign(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    # Servers started by root drop to their own users; let them in.
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)
    return PrivateCA(d)
