"""Which tenants have sealed traces: the partitions of the nightly sweep."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.queries import UNPROVEN_TRACE
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection

# A loose index scan would be faster on a huge table; the tenant index keeps this cheap.
# Sealed: the format's seal (seal_hash, format v1 or v2), as the sweep selects (sweep/state.py).
_TENANTS = f"""
SELECT DISTINCT tenant_id FROM aos_traces t
WHERE t.seal_hash IS NOT NULL AND NOT {UNPROVEN_TRACE.format(t="t")}
ORDER BY tenant_id
"""  # noqa: S608 - constant fragments


def sealed_tenants(url: DatabaseUrl) -> list[str]:
    async def tenants(conn: AsyncConnection) -> list[str]:
        return [row[0] for row in await conn.execute(text(_TENANTS))]

    return run_on_connection(url, tenants)
