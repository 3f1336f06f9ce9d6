"""The seed origin's shape of a verifier, for comparison only: an ORM loads the whole run,
then every step is canonicalized with the pure-Python `rfc8785` package and chained.

Not used by the project; the benchmark runs it in its own process.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import Float, Integer, String, create_engine, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import DateTime

from run_proof_pipeline.integrity import canonical_timestamp, step_record


class Base(DeclarativeBase):
    pass


class Trace(Base):
    __tablename__ = "aos_traces"
    trace_id: Mapped[str] = mapped_column(String, primary_key=True)
    genesis_hash: Mapped[str | None] = mapped_column(String)


class Step(Base):
    __tablename__ = "aos_trace_steps"
    trace_id: Mapped[str] = mapped_column(String, primary_key=True)
    step_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String)
    run_id: Mapped[str] = mapped_column(String)
    skill_id: Mapped[str | None] = mapped_column(String)
    skill_name: Mapped[str | None] = mapped_column(String)
    params: Mapped[Any] = mapped_column(JSONB)
    status: Mapped[str | None] = mapped_column(String)
    outcome_category: Mapped[str | None] = mapped_column(String)
    outcome_code: Mapped[str | None] = mapped_column(String)
    outcome_data: Mapped[Any] = mapped_column(JSONB)
    cost_cents: Mapped[float | None] = mapped_column(Float)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    retry_count: Mapped[int | None] = mapped_column(Integer)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_hash: Mapped[str | None] = mapped_column(String)
    step_hash: Mapped[str | None] = mapped_column(String)


def _number(value: Any) -> Any:
    # rfc8785 refuses integral floats beyond 2^53 as ints; give it what the spec hashes.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def naive_verify(sqlalchemy_url: str, trace_id: str) -> tuple[bool, int]:
    """(every step verifies, steps) for one trace; loads the run whole, as the seed did."""
    engine = create_engine(sqlalchemy_url)
    try:
        with Session(engine) as session:
            trace = session.get(Trace, trace_id)
            assert trace is not None and trace.genesis_hash is not None
            steps = session.scalars(
                select(Step).where(Step.trace_id == trace_id).order_by(Step.step_index)
            ).all()
            prev = bytes.fromhex(trace.genesis_hash)
            for step in steps:
                record = step_record(
                    tenant_id=step.tenant_id,
                    run_id=step.run_id,
                    step_index=step.step_index,
                    skill_id=step.skill_id,
                    skill_name=step.skill_name,
                    params=step.params,
                    status=step.status,
                    outcome_category=step.outcome_category,
                    outcome_code=step.outcome_code,
                    outcome_data=step.outcome_data,
                    cost_cents=_number(step.cost_cents),
                    duration_ms=_number(step.duration_ms),
                    retry_count=step.retry_count,
                    timestamp=canonical_timestamp(step.timestamp),
                )
                digest = hashlib.sha256(prev + rfc8785.dumps(record)).digest()
                if step.prev_hash != prev.hex() or step.step_hash != digest.hex():
                    return False, len(steps)
                prev = digest
            return True, len(steps)
    finally:
        engine.dispose()
