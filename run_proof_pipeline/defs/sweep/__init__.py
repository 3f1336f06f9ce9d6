"""The sweep in Dagster: every sealed run of every tenant, one partition per tenant."""
