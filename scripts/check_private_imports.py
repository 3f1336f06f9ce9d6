"""No private name crosses a package (docs/architecture.md, "Layers").

A name that starts with one underscore is a package's own business: another package that
imports it (`from run_proof_pipeline.a.b import _x`) or reaches for it through a module
(`import run_proof_pipeline.a.b as m; m._x`) depends on what its owner may change at will.
import-linter checks which packages may import which; this checks the names. Exit 1 with one
line per crossing, 0 when there is none.

Usage: python scripts/check_private_imports.py [ROOT]   (default: the repository root)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "run_proof_pipeline"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package_of(module: str) -> str:
    """`run_proof_pipeline.store.snapshot` -> `run_proof_pipeline.store`; a top-level module
    (`run_proof_pipeline.settings`) is a package of its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(root: Path, path: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def crossings(root: Path) -> Iterator[str]:
    for path in sorted((root / PACKAGE).rglob("*.py")):
        importer = _module_name(root, path)
        own = _package_of(importer)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith(PACKAGE + ".") or _package_of(node.module) == own:
                    continue
                for alias in node.names:
                    if _is_private(alias.name):
                        yield (
                            f"{path.relative_to(root)}:{node.lineno}: {importer} imports "
                            f"{node.module}.{alias.name}, a private name of another package"
                        )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + ".") and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
                and _package_of(aliases[node.value.id]) != own
            ):
                yield (
                    f"{path.relative_to(root)}:{node.lineno}: {importer} uses "
                    f"{aliases[node.value.id]}.{node.attr}, a private name of another package"
                )


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = list(crossings(root))
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} private name(s) cross a package", file=sys.stderr)
        return 1
    print("no private name crosses a package")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
