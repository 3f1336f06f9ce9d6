"""Ed25519 keys for signed notes, in the text forms of C2SP signed-note / golang.org/x/mod
(`PRIVATE+KEY+<name>+<id>+<base64>` and `<name>+<id>+<base64>`), so that existing witness and
transparency-log tooling can read them. Pure apart from load/save helpers on explicit paths.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from run_proof_pipeline.errors import ExitCode, RunProofError

__all__ = [
    "KeyProblem",
    "SigningKey",
    "VerifierKey",
    "generate_signing_key",
    "key_id",
    "load_signing_key",
    "load_verifier_key_file",
    "looks_like_key_text",
    "parse_verifier_key",
    "refuse_key_text_as_path",
    "verifier_key_from",
    "write_signing_key",
]

ALG_ED25519 = 0x01
_PRIVATE_PREFIX = "PRIVATE+KEY+"


class KeyProblem(RunProofError, ValueError):
    """A key is missing, unreadable or malformed; the message names where it came from."""

    exit_code = ExitCode.USAGE


def _check_name(name: str) -> str:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise KeyProblem(f"key name {name!r} must be non-empty, without '+' or spaces")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key ID: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    public_key: bytes  # 32 raw bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def text(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{blob}"

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def parse(cls, text: str, *, source: str = "verifier key") -> VerifierKey:
        parts = text.strip().split("+", 2)  # base64 may hold "+" too
        if len(parts) != 3:
            raise KeyProblem(f"{source} is not a `<name>+<id>+<base64 key>` verifier key")
        name, id_hex, blob = parts
        raw = _b64(blob, source)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyProblem(f"{source} is not an Ed25519 verifier key")
        key = cls(_check_name(name), raw[1:])
        if key.id.hex() != id_hex.lower():
            raise KeyProblem(f"{source}: key id {id_hex} does not match the key")
        return key


@dataclass(frozen=True)
class SigningKey:
    name: str
    seed: bytes  # the 32-byte Ed25519 private key

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def verifier(self) -> VerifierKey:
        public = self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return VerifierKey(self.name, public)

    def sign(self, message: bytes) -> bytes:
        return self._private().sign(message)

    def text(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier().id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str, *, source: str = "signing key") -> SigningKey:
        body = text.strip()
        if not body.startswith(_PRIVATE_PREFIX):
            raise KeyProblem(f"{source} is not a `PRIVATE+KEY+<name>+<id>+<base64>` signing key")
        parts = body[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise KeyProblem(f"{source} is not a `PRIVATE+KEY+<name>+<id>+<base64>` signing key")
        name, id_hex, blob = parts
        raw = _b64(blob, source)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyProblem(f"{source} is not an Ed25519 signing key")
        key = cls(_check_name(name), raw[1:])
        if key.verifier().id.hex() != id_hex.lower():
            raise KeyProblem(f"{source}: key id {id_hex} does not match the key")
        return key


def _b64(blob: str, source: str) -> bytes:
    try:
        return base64.b64decode(blob, validate=True)
    except ValueError:
        raise KeyProblem(f"{source}: the key is not valid base64") from None


def generate_signing_key(name: str) -> SigningKey:
    return SigningKey(_check_name(name), os.urandom(32))


def write_signing_key(path: Path, key: SigningKey) -> None:
    """Create `path` (never overwrite) readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.text() + "\n")


def load_signing_key(path: Path) -> SigningKey:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyProblem(f"cannot read the signing key {path}: {exc}") from None
    return SigningKey.parse(text, source=f"signing key {path}")


def looks_like_key_text(value: str) -> bool:
    """True when `value` has the form of a key's text (`PRIVATE+KEY+...`, or `name+id+base64`
    with an 8-hex-digit id and a 33-byte Ed25519 blob).

    Used only to refuse such a value where a path is expected, never to choose between
    reading a value as a path or as a key: each setting and option is one or the other, by
    its name, so a file planted at a path spelled like a key is never read as that key.
    """
    body = value.strip()
    if body.startswith(_PRIVATE_PREFIX):
        return True
    parts = body.split("+", 2)
    if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
        return False
    try:
        bytes.fromhex(parts[1])
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError:
        return False
    return len(raw) == 33 and raw[0] == ALG_ED25519


def refuse_key_text_as_path(value: str, setting: str, hint: str) -> None:
    """KeyProblem when the value of a path setting or option is a key's text."""
    if looks_like_key_text(value):
        raise KeyProblem(
            f"{setting} takes the path of a key file, and its value is a key's text: {hint}"
        )


def parse_verifier_key(text: str, *, source: str, file_setting: str) -> VerifierKey:
    """A verifier key given as text (`name+id+base64`); the value is never read as a path."""
    try:
        return VerifierKey.parse(text, source=source)
    except KeyProblem as exc:
        raise KeyProblem(
            f"{exc} (this value is the key's text, never a path: a key file is given with "
            f"{file_setting})"
        ) from None


def load_verifier_key_file(path: Path, *, source: str = "public key file") -> VerifierKey:
    """A verifier key read from the file at `path`; the path is never read as key text."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyProblem(f"{source} {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyProblem(f"cannot read the {source} {str(path)!r}: {exc}") from None
    return VerifierKey.parse(text, source=f"{source} {str(path)!r}")


def verifier_key_from(
    text: str | None, file: str | None, *, text_setting: str, file_setting: str
) -> VerifierKey | None:
    """The verifier key from exactly one of a key-text and a key-file setting (None when
    neither is set). Both set is a KeyProblem: which one was meant is never guessed."""
    text, file = (text or "").strip(), (file or "").strip()
    if text and file:
        raise KeyProblem(
            f"both {text_setting} and {file_setting} are given: give the key's text or its "
            "file, not both"
        )
    if text:
        return parse_verifier_key(text, source=text_setting, file_setting=file_setting)
    if file:
        refuse_key_text_as_path(file, file_setting, f"give key text with {text_setting}")
        return load_verifier_key_file(Path(file).expanduser(), source=file_setting)
    return None
