"""Types of the compiled fast path (store/_native_line.c; store/native_line.py wraps it):
format v1 (canonical_line, walk) and format v2 (canonical_line_v2, walk_v2)."""

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
def canonical_line_v2(
    line: bytes, tenant: bytes, run: bytes, trace: bytes, /
) -> tuple[int, bytes, int, str, str] | None: ...
def walk_v2(
    lines: list[bytes],
    start: int,
    prev: bytes,
    prev_hex: str,
    next_index: int,
    stop: int,
    tenant: bytes,
    run: bytes,
    trace: bytes,
    /,
) -> tuple[int, bytes]: ...
