"""Test helper: a throwaway certificate authority and a server certificate it signed, made at test time.

Not collected by pytest (no ``test_`` prefix). Uses the ``openssl`` command (the ``cryptography`` package
is not a dependency); ``make_certs`` skips the calling test, saying why, when ``openssl`` is missing.
The server certificate names ``localhost`` and ``127.0.0.1``, so clients verify the host name as well.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

# Python's default client context is strict (VERIFY_X509_STRICT from 3.13): a CA needs key usage and a
# leaf needs its authority key identifier, or verification fails for reasons that are not the test's.
_CA_EXT = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
           "-addext", "subjectKeyIdentifier=hash"]
_LEAF_EXT = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC: fast to generate


@dataclass(frozen=True)
class Certs:
    ca: str  # the CA certificate clients trust (--ca-file)
    cert: str  # the server's certificate (--tls-cert)
    key: str  # its private key (--tls-key), unencrypted, mode 600
    other_ca: str  # a CA that did not sign the server's certificate


def _openssl(*args: str, cwd: str) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr}")


def _ca(directory: str, name: str) -> tuple[str, str]:
    _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=resonate test {name}", *_CA_EXT, cwd=directory)
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")


def make_certs(directory: str) -> Certs:
    """A CA, a server certificate and key it signed, and an unrelated CA, as PEM files in ``directory``."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS tests need the openssl command to make a test certificate, and it is not installed")
    ca, _ = _ca(directory, "ca")
    other, _ = _ca(directory, "other-ca")
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        f.write(_LEAF_EXT)
    _openssl("req", *_EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "leaf.ext", cwd=directory)
    key = os.path.join(directory, "server.key")
    os.chmod(key, 0o600)
    return Certs(ca=ca, cert=os.path.join(directory, "server.pem"), key=key, other_ca=other)
