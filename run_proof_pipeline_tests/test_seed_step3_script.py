"""The seed's Step 3 script, with only its two import lines changed, run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import record_run

# Verbatim from the seed, except the two imports.
SEED_STEP3 = textwrap.dedent(
    """
    import asyncio
    import os

    from run_proof_pipeline import (
        get_run_proof_coordinator,
    )
    from run_proof_pipeline import get_session

    RUN_ID = os.environ["RUN_ID"]
    TENANT_ID = os.environ["TENANT_ID"]

    async def main():
        coordinator = get_run_proof_coordinator()
        async with get_session() as session:
            result = await coordinator.get_run_proof(session, TENANT_ID, RUN_ID)
            print("integrity_model:", result.integrity.model)
            print("verification_status:", result.integrity.verification_status)
            print("chain_length:", result.integrity.chain_length)
            print("root_hash:", result.integrity.root_hash)
            print("trace_count:", len(result.aos_traces))
            print("step_count:", len(result.aos_trace_steps))

    asyncio.run(main())
    """
)


def test_seed_step3_script_prints_hash_chain_verified(store: DatabaseUrl, tmp_path: Path) -> None:
    record_run(store, "tenant-a", "run-seed", steps=7)
    script = tmp_path / "step3.py"
    script.write_text(SEED_STEP3)
    env = {
        **os.environ,
        "RUN_ID": "run-seed",
        "TENANT_ID": "tenant-a",
        "DATABASE_URL": store.libpq(),
        "USE_POSTGRES_TRACES": "true",
    }

    completed = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )

    assert completed.returncode == 0, completed.stderr
    lines = dict(line.split(": ", 1) for line in completed.stdout.strip().splitlines())
    assert lines["integrity_model"] == "HASH_CHAIN"
    assert lines["verification_status"] == "VERIFIED"
    assert lines["chain_length"] == "7"
    assert lines["step_count"] == "7"
    assert lines["trace_count"] == "1"
    assert len(lines["root_hash"]) == 64
