"""The README's Layout is true to the tree: every package and top-level module of
run_proof_pipeline (and every entry of defs/) is listed, every listed entry exists, and the
packages appear in the layer order .importlinter enforces (docs/architecture.md)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "run_proof_pipeline"


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's Layout section has no tree block"
    return block.group(1).splitlines()


def _listed(indent: int) -> list[str]:
    """Names listed at `indent` spaces under `run_proof_pipeline/` (until the next top line)."""
    names: list[str] = []
    inside = False
    for line in _layout_block():
        if line.startswith("run_proof_pipeline/"):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        match = re.match(rf"^ {{{indent}}}(\S+)", line)
        if inside and match:
            names.append(match.group(1))
    return names


def _entries(directory: Path) -> set[str]:
    found = {f"{p.name}/" for p in directory.iterdir() if (p / "__init__.py").is_file()}
    found |= {p.name for p in directory.glob("*.py") if p.name != "__init__.py"}
    return found


def test_every_package_and_module_is_listed_and_every_listed_one_exists() -> None:
    assert set(_listed(2)) == _entries(PACKAGE)


def test_every_entry_of_defs_is_listed() -> None:
    assert set(_listed(4)) == _entries(PACKAGE / "defs")


def test_the_packages_are_listed_in_the_enforced_layer_order() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    layers = [
        line.strip()
        for line in config["importlinter:contract:layers"]["layers"].splitlines()
        if line.strip()
    ]
    rank = {
        name.strip(): position for position, layer in enumerate(layers) for name in layer.split("|")
    }
    listed = [name.rstrip("/").removesuffix(".py") for name in _listed(2)]
    assert set(rank) == set(listed), "the layer contract and the Layout name other packages"
    ranks = [rank[name] for name in listed]
    assert ranks == sorted(ranks), f"Layout order {listed} is not the layer order {layers}"
