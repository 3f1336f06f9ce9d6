"""The code location's deployment settings: when each schedule fires and which automation is
on by default. One pydantic-settings object, read once when the definitions load (a Dagster
code location is a process per deployment: its environment is its configuration), so every
schedule and sensor takes its cron, timezone and default status from the same place and the
same rules (README, "Schedules and sensors"). An empty variable means its default, as unset.

What an op reads when it runs (the report directory, the signing key, the retention window)
is read by that op at run time instead: a run launched after the environment changed uses
the new value and a bad value stops that run, not the code location's load."""

from __future__ import annotations

from typing import Literal

from dagster import DefaultScheduleStatus, DefaultSensorStatus
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploymentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RUN_PROOF_", env_ignore_empty=True, extra="ignore", frozen=True
    )

    timezone: str = "UTC"
    nightly_cron: str = "0 2 * * *"
    sweep_cron: str = "30 2 * * *"
    full_sweep_cron: str = "30 3 * * 0"
    checkpoint_cron: str = "0 * * * *"
    aos_retention_cron: str = "0 0 * * *"
    # Opt-in automation: the sensors (RUNNING with `running`), the checkpoint schedule (RUNNING
    # when a checkpoint directory is configured), the retention retirement (RUNNING when AOS's
    # retention window is configured: a tombstone lets a proven run be deleted).
    sensors: Literal["running", "stopped"] = "stopped"
    checkpoint_dir: str = ""
    aos_retention_days: str = ""

    @field_validator("sensors", mode="before")
    @classmethod
    def _sensors_word(cls, value: object) -> object:
        # Anything but `running` keeps the sensors stopped (fail closed: no surprise runs).
        word = str(value).strip().lower()
        return word if word == "running" else "stopped"

    @field_validator("checkpoint_dir", "aos_retention_days", mode="after")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()

    def sensor_status(self) -> DefaultSensorStatus:
        if self.sensors == "running":
            return DefaultSensorStatus.RUNNING
        return DefaultSensorStatus.STOPPED

    @staticmethod
    def schedule_status(on: bool) -> DefaultScheduleStatus:
        return DefaultScheduleStatus.RUNNING if on else DefaultScheduleStatus.STOPPED


DEPLOYMENT = DeploymentSettings()
