"""The sweep asset on a real Dagster instance: one check result per tenant partition."""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import (
    AssetCheckKey,
    DagsterInstance,
    RunRequest,
    build_schedule_context,
    materialize,
)

from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.defs.sweep.assets import (
    SWEEP_ASSET,
    SWEEP_CHECK,
    TENANTS,
    aos_traces_sweep,
)
from run_proof_pipeline.defs.sweep.schedules import nightly_sweep, weekly_full_sweep
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, record_run


def _resources(url: DatabaseUrl) -> dict[str, object]:
    return {"trace_store": TraceStoreResource(database_url=url.libpq(), use_postgres_traces="true")}


def test_each_tenant_partition_records_its_own_check_result(
    store: DatabaseUrl, fresh_dagster_instance: DagsterInstance
) -> None:
    for i in range(3):
        record_run(store, "tenant-a", f"a-{i}", steps=3)
        record_run(store, "tenant-b", f"b-{i}", steps=3)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE run_id = %s AND step_index = 2",
        ("b-1",),
        table="aos_trace_steps",
    )
    assert touched == 1
    instance = fresh_dagster_instance
    instance.add_dynamic_partitions(TENANTS, ["tenant-a", "tenant-b"])
    for tenant in ("tenant-a", "tenant-b"):
        result = materialize(
            [aos_traces_sweep],
            partition_key=tenant,
            instance=instance,
            resources=_resources(store),
            run_config={"ops": {"aos_traces_sweep": {"config": {"workers": 1}}}},
            raise_on_error=False,
        )
        assert result.success  # a failed check is a result, not a crashed run
        [evaluation] = result.get_asset_check_evaluations()
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        assert metadata["runs"] == 3
        assert metadata["trace_kinds"]["native"] == 3 and metadata["trace_kinds"]["legacy"] == 0
        if tenant == "tenant-a":
            assert evaluation.passed and metadata["failures"] == 0
        else:
            assert not evaluation.passed and metadata["failures"] == 1
            assert evaluation.severity.value == "ERROR"
            assert metadata["failed_runs"][0]["run_id"] == "b-1"
            assert metadata["failed_runs"][0]["first_bad"] == "step 2"

    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(SWEEP_ASSET, SWEEP_CHECK), limit=10
    )
    assert len(history) == 2  # one per partition run
    materialized = instance.get_materialized_partitions(SWEEP_ASSET)
    assert materialized == {"tenant-a", "tenant-b"}


def test_schedules_request_one_run_per_tenant_and_add_the_partitions(
    store: DatabaseUrl, fresh_dagster_instance: DagsterInstance
) -> None:
    record_run(store, "tenant-x", "x-1", steps=1)
    record_run(store, "tenant-y", "y-1", steps=1)
    record_run(store, "tenant-z", "z-open", steps=1, seal=False)  # nothing sealed yet
    instance = fresh_dagster_instance
    # The context opens its own instance from the ref and holds it until closed: an unclosed
    # context leaves Dagster's current defs-state storage pointing at a disposed instance,
    # and a later test on the same worker then fails to load any Definitions.
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 2, 10, 2, 30, tzinfo=UTC),
        resources=_resources(store),
    ) as context:
        nightly = nightly_sweep(context)
        weekly = weekly_full_sweep(context)
    assert isinstance(nightly, list) and all(isinstance(r, RunRequest) for r in nightly)
    assert [r.partition_key for r in nightly] == ["tenant-x", "tenant-y"]
    assert nightly[0].run_config["ops"]["aos_traces_sweep"]["config"]["full"] is False
    assert set(instance.get_dynamic_partitions(TENANTS)) == {"tenant-x", "tenant-y"}
    assert isinstance(weekly, list)
    assert all(r.run_config["ops"]["aos_traces_sweep"]["config"]["full"] for r in weekly)
    assert nightly[0].run_key != weekly[0].run_key
