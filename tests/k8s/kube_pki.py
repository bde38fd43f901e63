"""Throwaway PKI for a test kube-apiserver, made with the `openssl` command line tool.

A real apiserver insists on TLS and on a service-account signing key, so the tests need a CA,
a serving certificate for 127.0.0.1, an admin client certificate and an SA key pair. Keys are
EC P-256 (generated in milliseconds, unlike RSA) and certificates live for two days: the files
sit in a pytest tmp dir that is gone long before that. The certificates carry the extensions
a strict verifier wants (critical basicConstraints, key identifiers), so Python's ssl module
(VERIFY_X509_STRICT on 3.13+), Go and kubectl all accept them.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30.0
VALIDITY_DAYS = "2"

ADMIN_USER = "smsmesh-admin"
"""Static-token and client-certificate user in group system:masters (full access)."""
UNPRIVILEGED_USER = "smsmesh-user"
"""Static-token user with no groups and no RBAC bindings: every request is forbidden."""


class PkiError(RuntimeError):
    """openssl is missing or one of its commands failed."""


@dataclass(frozen=True)
class Pki:
    """Paths of everything the apiserver and its clients need, plus the bearer tokens."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_private_key: Path
    sa_public_key: Path
    token_file: Path
    admin_token: str
    user_token: str


def _openssl(*args: str, cwd: Path) -> None:
    """Run one openssl command; raise PkiError with its stderr when it fails."""
    try:
        subprocess.run(
            ["openssl", *args],
            cwd=cwd,
            check=True,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        raise PkiError(f"openssl {args[0]} failed: {exc.stderr.decode(errors='replace')}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PkiError(f"openssl {args[0]} did not finish in {OPENSSL_TIMEOUT_S} s") from exc


def _ec_key(directory: Path, name: str) -> Path:
    path = directory / name
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name,
        cwd=directory,
    )  # fmt: skip
    path.chmod(0o600)
    return path


def _signed_leaf(directory: Path, name: str, subject: str, extensions: list[str]) -> Path:
    """Create <name>.key and a <name>.crt signed by ca.crt/ca.key with the given extensions."""
    _ec_key(directory, f"{name}.key")
    csr = f"{name}.csr"
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", csr, cwd=directory)
    ext_file = directory / f"{name}.ext"
    common = [
        "basicConstraints=critical,CA:FALSE",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    ext_file.write_text("\n".join(common + extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", VALIDITY_DAYS, "-sha256",
        "-extfile", ext_file.name, "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def generate_pki(directory: Path) -> Pki:
    """Write a fresh CA, serving/admin certificates, SA keys and a token file into directory."""
    if shutil.which("openssl") is None:
        raise PkiError("the openssl command line tool is not installed")
    directory.mkdir(parents=True, exist_ok=True)

    _ec_key(directory, "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=smsmesh-test-ca",
        "-days", VALIDITY_DAYS, "-sha256", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip

    serving_cert = _signed_leaf(
        directory,
        "apiserver",
        "/CN=kube-apiserver",
        [
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
    )
    # The apiserver maps a client certificate's O= to groups: system:masters bypasses RBAC.
    admin_cert = _signed_leaf(
        directory,
        "admin",
        f"/O=system:masters/CN={ADMIN_USER}",
        ["keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
    )

    sa_private = _ec_key(directory, "sa.key")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)

    admin_token = secrets.token_urlsafe(32)
    user_token = secrets.token_urlsafe(32)
    token_file = directory / "tokens.csv"
    # Format: token,user,uid[,"group1,group2"]
    token_file.write_text(
        f'{admin_token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n'
        f"{user_token},{UNPRIVILEGED_USER},{UNPRIVILEGED_USER}-uid\n"
    )
    token_file.chmod(0o600)

    return Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=serving_cert,
        serving_key=directory / "apiserver.key",
        admin_cert=admin_cert,
        admin_key=directory / "admin.key",
        sa_private_key=sa_private,
        sa_public_key=directory / "sa.pub",
        token_file=token_file,
        admin_token=admin_token,
        user_token=user_token,
    )
