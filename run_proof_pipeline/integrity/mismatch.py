"""One value type for "this did not match": a field whose stored value differs from the value
recomputed here. The chain's verdicts, the ledger, bundles and vectors files all report a
difference with it (issue 15: before, each had its own shape, and "expected" meant the
recomputed value in one place and the stored one in another).

A Mismatch names its two sides by what they are, never "expected": `stored` is what a row, the
ledger, a checkpoint, a bundle or a vectors file holds; `recomputed` is what this code computes
from the data being proved. docs/aos-compat.md fixes how a failure shows them: `expected` is
the recomputed value and `found` the stored one, so IntegrityFailure.of() (integrity/failure.py)
maps a Mismatch onto those fields in one place, and no caller assigns them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from run_proof_pipeline.integrity.chain import is_hex_hash

__all__ = ["Mismatch", "as_text", "stored_hash_text"]


def as_text(value: object) -> str | None:
    """A compared value as a Mismatch holds it: None (NULL, or absent) stays None, text stays
    as it is, anything else is its repr."""
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def stored_hash_text(value: object) -> str:
    """A stored hash as a reason shows it: `null`, the hash, or the value and why it is not
    one (64 lowercase hex characters is the only stored form of a hash, docs/hash-chain-v1.md)."""
    if value is None:
        return "null"
    if is_hex_hash(value):
        return value
    return f"{value!r}, not 64 lowercase hex characters"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """`field` holds `stored` where `recomputed` was due; values as text, None for NULL."""

    field: str
    stored: str | None
    recomputed: str | None

    def text(self, holder: str | None = None) -> str:
        """The standard text: `<field> mismatch (expected <recomputed>, found <stored>)`, the
        wording of the chain's failures (expected = recomputed, found = stored:
        docs/aos-compat.md). A value stored outside the record being proved names who holds
        it instead, so its two sides cannot be read the wrong way round: with `holder`
        ("the ledger", "the checkpoint", "the file"), `<field> mismatch (recomputed
        <recomputed>, <holder> holds <stored>)`.

        NULL is `null`; a stored value compared with a hash is shown as stored_hash_text()
        shows it."""
        recomputed = "null" if self.recomputed is None else self.recomputed
        stored = self._stored_text()
        if holder is None:
            return f"{self.field} mismatch (expected {recomputed}, found {stored})"
        return f"{self.field} mismatch (recomputed {recomputed}, {holder} holds {stored})"

    def _stored_text(self) -> str:
        if is_hex_hash(self.recomputed):
            return stored_hash_text(self.stored)
        return "null" if self.stored is None else self.stored
