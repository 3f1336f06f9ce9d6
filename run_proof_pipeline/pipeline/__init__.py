"""The seed's test plan as a Dagster job: one op per plan step, gated."""
