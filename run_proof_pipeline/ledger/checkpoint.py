"""Checkpoints: a C2SP tlog-checkpoint body, signed as a C2SP signed note (Ed25519).

    <origin>\\n<tree size>\\n<base64 root hash>\\n[extension lines]\\n
    \\n
    — <key name> <base64(4-byte key id || 64-byte signature)>\\n

The signature covers the body bytes (everything before the blank line). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from run_proof_pipeline.errors import RunProofError
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey

__all__ = ["Checkpoint", "CheckpointProblem", "SignedCheckpoint", "sign_checkpoint"]

_DASH = "\u2014 "  # EM DASH, SPACE: the start of every signature line


class CheckpointProblem(RunProofError, ValueError):
    """A checkpoint note is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes  # 32 bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        if not self.origin or "\n" in self.origin:
            raise CheckpointProblem(f"origin {self.origin!r} must be one non-empty line")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointProblem("a checkpoint body has at least 3 lines, each ending in \\n")
        origin, size_text, root_text, *extensions = lines[:-1]
        if not origin:
            raise CheckpointProblem("checkpoint origin line is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise CheckpointProblem(f"checkpoint tree size {size_text!r} is not a decimal")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointProblem(f"checkpoint root {root_text!r} is not base64") from None
        if len(root) != 32:
            raise CheckpointProblem(f"checkpoint root is {len(root)} bytes, not 32")
        if any(not line for line in extensions):
            raise CheckpointProblem("checkpoint extension lines may not be empty")
        return cls(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    # (key name, key id, signature) as they appear in the note, in order
    signatures: tuple[tuple[str, bytes, bytes], ...] = field(default=())

    def note(self) -> str:
        lines = [
            f"{_DASH}{name} {base64.b64encode(kid + sig).decode()}"
            for name, kid, sig in self.signatures
        ]
        return self.checkpoint.body() + "\n" + "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, note: str) -> SignedCheckpoint:
        body, sep, sigs = note.partition("\n\n")
        if not sep:
            raise CheckpointProblem("not a signed note: no blank line before the signatures")
        checkpoint = Checkpoint.parse_body(body + "\n")
        signatures: list[tuple[str, bytes, bytes]] = []
        for line in sigs.split("\n"):
            if not line:
                continue
            if not line.startswith(_DASH):
                raise CheckpointProblem(f"signature line {line[:40]!r} does not start with '— '")
            name, _, blob = line[len(_DASH) :].rpartition(" ")
            try:
                raw = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                raise CheckpointProblem(f"signature of {name!r} is not base64") from None
            if len(raw) < 5:
                raise CheckpointProblem(f"signature of {name!r} is too short")
            signatures.append((name, raw[:4], raw[4:]))
        if not signatures:
            raise CheckpointProblem("the checkpoint note carries no signature")
        return cls(checkpoint, tuple(signatures))

    def verify(self, key: VerifierKey) -> None:
        """Raise CheckpointProblem unless `key` signed this body (by name and key id)."""
        message = self.checkpoint.body().encode()
        for name, kid, sig in self.signatures:
            if name == key.name and kid == key.id:
                if key.verify(sig, message):
                    return
                raise CheckpointProblem(
                    f"the signature by {key.name!r} (key id {kid.hex()}) does not verify: "
                    "the checkpoint was altered or signed by another key"
                )
        names = ", ".join(f"{n} ({k.hex()})" for n, k, _ in self.signatures)
        raise CheckpointProblem(
            f"no signature by the public key {key.name!r} (key id {key.id.hex()}); "
            f"the note is signed by {names}"
        )


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> SignedCheckpoint:
    verifier = key.verifier()
    signature = key.sign(checkpoint.body().encode())
    return SignedCheckpoint(checkpoint, ((key.name, verifier.id, signature),))
