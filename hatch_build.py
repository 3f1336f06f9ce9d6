"""Build hook (hatchling): compiles the proof's compiled fast path, store/_native_line.c
(store/native_line.py says whether it loaded), with the machine's C compiler.

The extension is optional: without a compiler (or with one that fails, e.g. CC=/bin/false)
the build prints why and goes on, and the package proves on its pure path. No setuptools:
the compiler is called directly with the interpreter's own flags (sysconfig), and the
module links the OpenSSL libcrypto the interpreter's _hashlib uses.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("run_proof_pipeline") / "store" / "_native_line.c"


def _command(source: Path, output: Path) -> list[str]:
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    flags = ["-O2", "-shared", "-fPIC", "-std=c99", f"-I{sysconfig.get_paths()['include']}"]
    return [*shlex.split(compiler), *flags, str(source), "-o", str(output), "-lcrypto"]


def build_native(root: Path) -> Path | None:
    """Compile the extension next to its source; its path, or None (and why, on stderr)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = root / SOURCE.with_name("_native_line" + suffix)
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / target.name
        try:
            done = subprocess.run(
                _command(root / SOURCE, built), capture_output=True, text=True, check=False
            )
        except OSError as exc:
            print(
                f"run-proof: native path not built ({exc}); the pure path proves", file=sys.stderr
            )
            return None
        if done.returncode != 0 or not built.exists():
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [
                f"exit {done.returncode}"
            ]
            print(
                f"run-proof: native path not built ({why[0]}); the pure path proves",
                file=sys.stderr,
            )
            target.unlink(missing_ok=True)  # never ship an older build of the source
            return None
        os.replace(built, target)
    return target


class NativeLineHook(BuildHookInterface):  # type: ignore[misc]  # hatchling ships no types
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        built = build_native(root)
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            # The built file is gitignored (hatchling leaves ignored files out): name it.
            build_data["force_include"][str(built)] = str(built.relative_to(root))
