"""AOS's retention in Dagster: retire (signed tombstones) the runs it deletes next."""
