"""Types of the compiled fast path (store/_native_line.c; store/native_line.py wraps it)."""

def canonical_line(line: bytes, /) -> tuple[int, bytes, str, str] | None: ...
def walk(
    lines: list[bytes],
    start: int,
    prev: bytes,
    prev_hex: str,
    next_index: int,
    stop: int,
    /,
) -> tuple[int, bytes]: ...
