"""Build hook (hatchling): compiles the proof's compiled fast path, store/_native_line.c
(store/native_line.py says whether it loaded), with the machine's C compiler.

The extension is optional: without a compiler (or with one that fails, e.g. CC=/bin/false)
the build prints why and goes on, and the package proves on its pure path. No setuptools:
the compiler is called directly with the interpreter's own flags (sysconfig), and the
module links the OpenSSL libcrypto the interpreter's _hashlib uses. An editable install
builds the module next to its source (gitignored); a wheel builds it in a scratch directory
and ships it from there, so building a wheel never changes the checkout.
"""

from __future__ import annotations

import os
import shlex
import shutil
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


def _say(why: str) -> None:
    print(f"run-proof: native path not built ({why}); the pure path proves", file=sys.stderr)


def build_native(source: Path, directory: Path) -> Path | None:
    """Compile `source` into `directory`; the module's path, or None (and why, on stderr)."""
    target = directory / ("_native_line" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / target.name
        try:
            done = subprocess.run(
                _command(source, built), capture_output=True, text=True, check=False
            )
        except OSError as exc:
            _say(str(exc))
            return None
        if done.returncode != 0 or not built.exists():
            lines = (done.stderr or done.stdout).strip().splitlines()
            _say(lines[-1] if lines else f"the compiler exited {done.returncode}")
            return None
        os.replace(built, target)
    return target


class NativeLineHook(BuildHookInterface):  # type: ignore[misc]  # hatchling ships no types
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._scratch: str | None = None
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if version == "editable":
            built = build_native(root / SOURCE, (root / SOURCE).parent)
            if built is None:  # never leave a build of an older source in place
                for stale in (root / SOURCE).parent.glob("_native_line*.so"):
                    stale.unlink()
        else:
            self._scratch = tempfile.mkdtemp(prefix="run-proof-native-")
            built = build_native(root / SOURCE, Path(self._scratch))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(built)] = str(SOURCE.with_name(built.name))

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_scratch", None):
            shutil.rmtree(str(self._scratch), ignore_errors=True)
