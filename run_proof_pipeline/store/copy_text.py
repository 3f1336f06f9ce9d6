"""COPY text format, field by field: a proof reads step rows as raw COPY lines
(store/snapshot.py) and takes each field's bytes here before decoding its value.

PostgreSQL's COPY TO writes one line per row, fields separated by tabs, NULL as `\\N`, and
backslash, newline, carriage return, tab, backspace, form feed and vertical tab as backslash
sequences; COPY FROM also accepts octal and hex escapes, which are read here too.
"""

from __future__ import annotations

__all__ = ["as_text", "unescape_copy_field", "unescape_copy_text"]

_COPY_ESCAPES = {
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
    ord("\\"): b"\\",
}
_HEX = "0123456789abcdefABCDEF"


def unescape_copy_field(field: bytes) -> bytes | None:
    """One field of COPY text format as its bytes (None for NULL)."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        c = field[i]
        if c != 0x5C or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _COPY_ESCAPES:
            out += _COPY_ESCAPES[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            j = i + 1
            while j < n and j < i + 4 and 0x30 <= field[j] <= 0x37:
                j += 1
            out.append(int(field[i + 1 : j], 8) & 0xFF)
            i = j
        elif nxt == ord("x") and i + 2 < n and chr(field[i + 2]) in _HEX:
            j = i + 2
            while j < n and j < i + 4 and chr(field[j]) in _HEX:
                j += 1
            out.append(int(field[i + 2 : j], 16))
            i = j
        else:
            out.append(nxt)  # any other escaped character stands for itself
            i += 2
    return bytes(out)


def as_text(field: bytes | None) -> str | None:
    """A field's bytes (UTF-8 on the wire) as text, None for NULL."""
    return None if field is None else field.decode("utf-8")


def unescape_copy_text(field: str) -> str:
    """A COPY text field holding backslash escapes, unescaped (a non-NULL field: `\\N` is
    taken for NULL by the caller first)."""
    return (unescape_copy_field(field.encode()) or b"").decode("utf-8")
