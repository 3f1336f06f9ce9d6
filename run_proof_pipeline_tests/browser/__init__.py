"""Browser tests: a real Chromium drives dagster-webserver against a throwaway PostgreSQL."""
