"""The Ed25519 key that signs audit checkpoints, and the public key that verifies them.

The private key lives in the state directory (``audit-signing-key.pem``, 0600), or wherever
``--audit-key`` says; it is created on first use. The public key is written next to the log
(``audit.jsonl.pub``) so that ``audit verify`` finds it, and its fingerprint is printed with every
verification: compare it with a copy kept somewhere the attacker cannot write, because whoever can
replace both the ``.pub`` and the anchor can forge everything (see the README).

``cryptography`` is imported on first use, so importing the policy package stays cheap.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.audit_errors import AuditUnavailable, unavailable

DEFAULT_KEY_NAME = "audit-signing-key.pem"


def default_key_path() -> Path:
    from azure_agent_mcp.paths import state_dir

    return state_dir() / DEFAULT_KEY_NAME


def fingerprint(raw_public: bytes) -> str:
    """``SHA256:<base64>`` of the raw 32-byte public key (the OpenSSH style, easy to compare by eye)."""
    digest = base64.b64encode(hashlib.sha256(raw_public).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


@dataclass(frozen=True)
class PublicKey:
    """A checkpoint verifier."""

    raw: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifies(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def load_public_key(path: Path) -> PublicKey:
    """A PEM public key file (what the writer puts at ``audit.jsonl.pub``). ValueError when it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class SigningKey:
    """The private key, loaded (or created 0600) from ``path``."""

    def __init__(self, key: Any, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self.path = path
        self.public = PublicKey(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key at ``path``; a new one when there is none (O_EXCL: two servers starting agree on one)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        for _ in range(3):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = None
            except OSError as exc:
                raise unavailable(path, exc, doing="read the audit signing key") from exc
            if data is not None and data.strip():
                _tighten(path)
                try:
                    key = serialization.load_pem_private_key(data, password=None)
                except (ValueError, TypeError) as exc:
                    raise AuditUnavailable(path, f"not a PEM private key without a passphrase ({type(exc).__name__})",
                                           doing="load the audit signing key") from None
                if not isinstance(key, Ed25519PrivateKey):
                    raise AuditUnavailable(path, "not an Ed25519 private key", doing="load the audit signing key")
                return cls(key, path)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            except FileExistsError:
                continue  # another process created it meanwhile (or it is being written): read it
            except OSError as exc:
                raise unavailable(path, exc, doing="create the audit signing key") from exc
            try:
                os.write(fd, pem)
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise unavailable(path, exc, doing="write the audit signing key") from exc
            os.close(fd)
            return cls(key, path)
        raise AuditUnavailable(path, "the file is empty", doing="load the audit signing key")


def _tighten(path: Path) -> None:
    """A private key readable by others is made 0600 when it is ours (as the log is)."""
    try:
        info = path.stat()
        if info.st_mode & 0o077 and hasattr(os, "getuid") and info.st_uid == os.getuid():
            os.chmod(path, 0o600)
    except OSError:
        pass


def write_public_key(path: Path, public: PublicKey) -> None:
    """Write ``path`` (0644) if it is missing; refuse when it holds another key (fail closed)."""
    try:
        existing = load_public_key(path)
    except FileNotFoundError:
        existing = None
    except (OSError, ValueError) as exc:
        raise AuditUnavailable(path, f"not a readable Ed25519 public key ({exc})", doing="read") from None
    if existing is not None:
        if existing.raw != public.raw:
            raise AuditUnavailable(
                path,
                f"this log's checkpoints are verified with key {existing.fingerprint}, but the signing key is "
                f"{public.fingerprint}: pass --audit-key with the key that signed it, or move the log, its anchor "
                "and its .pub aside to start a new log",
                doing="sign checkpoints for",
            )
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(public.pem())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise unavailable(path, exc) from exc
