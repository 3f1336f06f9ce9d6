"""The seed's plan as a Dagster job: the job, its checks, schedule, sensors and CLI."""
