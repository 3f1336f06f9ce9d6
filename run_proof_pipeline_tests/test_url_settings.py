"""Issue 12: every malformed DATABASE_URL is one clear configuration error (exit 2), found
before any connection and before the embedded server is started, with no secret shown.

The unit cases parse in process; the CLI cases run `run-proof verify` as a real process
(docs/bad-input.md lists the lines) with RUN_PROOF_HOME in a temporary directory, so that a
case that wrongly fell back to the embedded default would be seen creating its server there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES, dagster_storage_url
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, Settings
from run_proof_pipeline_tests.support.cli_process import CLI, run_process

SECRET = "Urs3cretPW"


def verify_process(
    database_url: str | None, home: Path, *args: str, tenant_id: str = "t", run_id: str = "r"
) -> subprocess.CompletedProcess[str]:
    """`run-proof verify` as a process, with DATABASE_URL exactly `database_url` (None:
    unset) and none of the developer's location settings."""
    env = {k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}
    env["RUN_PROOF_HOME"] = str(home)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return run_process([CLI, "verify", "--tenant-id", tenant_id, "--run-id", run_id, *args], env)


def _slow(*values: object, id: str) -> Any:
    # A real process each (seconds): a few stay in the quick suite, the rest run with slow.
    return pytest.param(*values, id=id, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        pytest.param(
            f"postgresql://app:{SECRET}@127.0.0.1:notaport/aos",
            "DATABASE_URL='postgresql://app:***@127.0.0.1:notaport/aos' has port 'notaport'; "
            "a port is a number from 1 to 65535",
            id="port-notaport",
        ),
        _slow(
            f"postgresql://app:{SECRET}@[::1/aos",
            "DATABASE_URL='postgresql://app:***@[::1/aos' has an unclosed '[' in its host; "
            "an IPv6 host is written [::1]",
            id="unclosed-ipv6",
        ),
        _slow(
            f"postgresql://app:{SECRET}@127.0.0.1:99999/aos",
            "DATABASE_URL='postgresql://app:***@127.0.0.1:99999/aos' has port '99999'; "
            "a port is a number from 1 to 65535",
            id="port-99999",
        ),
        _slow(
            f"postgresql://app:{SECRET}@127.0.0.1/aos?connect_timeout=abc",
            "DATABASE_URL='postgresql://app:***@127.0.0.1/aos?connect_timeout=abc' has "
            "connect_timeout='abc'; it must be a whole number of 0 or more",
            id="connect-timeout-abc",
        ),
        pytest.param(
            f"postgresql://app@127.0.0.1/aos?password={SECRET}&sslmode=bogus",
            "DATABASE_URL='postgresql://app@127.0.0.1/aos?password=***&sslmode=bogus' has "
            "sslmode='bogus'; libpq takes one of: disable, allow, prefer, require, verify-ca, "
            "verify-full",
            id="sslmode-bogus",
        ),
        pytest.param(
            "   ",
            "DATABASE_URL is set but only whitespace; unset it to use the embedded default "
            "PostgreSQL, or set it to a URL (postgresql://user:***@host:port/dbname)",
            id="whitespace-only",
        ),
        _slow(
            "",
            "DATABASE_URL is set but empty; unset it to use the embedded default PostgreSQL, "
            "or set it to a URL (postgresql://user:***@host:port/dbname)",
            id="empty",
        ),
        _slow(
            f"host=127.0.0.1 user=app password={SECRET} dbname=aos",
            "DATABASE_URL='host=127.0.0.1 user=app password=*** dbname=aos' is a libpq "
            "key=value connection string, not a URL; write it as "
            "postgresql://user:***@host:port/dbname (percent-encode the password)",
            id="conninfo",
        ),
        _slow(
            f"postgresql://app@127.0.0.1/aos?passwrd={SECRET}",
            "DATABASE_URL='postgresql://app@127.0.0.1/aos?passwrd=***' has 'passwrd' as a query "
            "parameter, which is not a libpq connection parameter (PostgreSQL docs: libpq, "
            "Parameter Key Words)",
            id="unknown-parameter",
        ),
    ],
)
def test_malformed_database_url_is_one_configuration_error_line(
    tmp_path: Path, database_url: str, message: str
) -> None:
    completed = verify_process(database_url, tmp_path)

    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [f"run-proof: configuration error: {message}"]
    assert "Traceback" not in completed.stderr
    assert SECRET not in completed.stdout + completed.stderr
    # Refused before anything started: no banner, and no embedded server under RUN_PROOF_HOME.
    assert completed.stdout == ""
    assert not (tmp_path / ".run-proof").exists()


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://u@h:0/db",
        "postgresql://u@h:65536/db",
        "postgresql://u@h:-1/db",
        "postgresql://u@h:5432x/db",
        "postgresql://u@h:/db",
        "postgresql://u@h/db?port=abc",
        "postgresql://u@[::1]x/db",
        "postgresql://u@[not-ipv6]/db",
        "postgresql://u@::1/db",
        "postgresql://u@h1,h2/db",
        "postgresql://u@h/db?connect_timeout=1.5",
        "postgresql://u@h/db?connect_timeout=99999999999",
        "postgresql://u@h/db?keepalives_idle=x",
        "postgresql://u@h/db?gssencmode=always",
        "postgresql://u@h/db?target_session_attrs=master",
        "postgresql://u@h/db?channel_binding=yes",
        "postgresql://u@h/db?sslmode=REQUIRE",
        "postgresql://u@h/db?nosuchparameter=1",
        "postgresql://u@h/db?sslmode=require&sslmode=disable",
        "postgresql://u@h/db?sslmode",
        "postgresql://u@h/d%zz",
        "postgresql://u@h/d%ff",
        "postgresql://u@h/d%00b",
        "postgresql://u@h/db#frag",
        "postgresql://u@h/db?application_name=a@b",
        "postgresql://u@h/db?dbname=other",
        "postgresql://u@h:5432/db?port=5433",
        "postgresql://u@h/my db",
        "postgresql://u@h/d\nb",
        "postgresql://u@[fe80::1%25eth0]/db",
        "postgresql://u@h/db\x00",
    ],
)
def test_invalid_url_parts_are_configuration_errors_before_connecting(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        DatabaseUrl.parse(raw)
    message = str(refused.value)
    assert message.startswith("DATABASE_URL=")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "libpq"),
    [
        (
            "postgresql://u@h:5432/db?sslmode=verify-full",
            "postgresql://u@h:5432/db?sslmode=verify-full",
        ),
        ("postgresql://u@[::1]:5432/db", "postgresql://u@[::1]:5432/db"),
        ("postgresql://u@%2Ftmp%2Fsock/db", "postgresql://u@/db?host=%2Ftmp%2Fsock"),
        ("postgresql:///db?host=/tmp/sock", "postgresql:///db?host=%2Ftmp%2Fsock"),
        ("postgresql://u@h/?dbname=db", "postgresql://u@h/?dbname=db"),
        ("postgresql://u@h/db?connect_timeout=0&keepalives=1", None),
        ("postgresql://u@h/db?options=-c%20search_path%3Dx", None),
        ("postgresql://u@h/db?application_name=a%2Bb+c", None),
        ("postgresql://u@h/db?target_session_attrs=read-write&load_balance_hosts=random", None),
        ("  postgresql://u@h/db  ", "postgresql://u@h/db"),
        ("POSTGRESQL://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u@h/db?", "postgresql://u@h/db"),
    ],
)
def test_valid_urls_are_accepted_and_render_back_exactly(raw: str, libpq: str | None) -> None:
    url = DatabaseUrl.parse(raw)
    if libpq is not None:
        assert url.libpq() == libpq
    # What libpq reads back from the rendered URL is what was parsed: nothing moves.
    assert DatabaseUrl.parse(url.libpq()).url == url.url
    assert DatabaseUrl.parse(url.sqlalchemy()).url == url.url
    # ... and what SQLAlchemy (the engines, alembic, dagster-postgres) reads from its forms.
    assert make_url(url.sqlalchemy()).translate_connect_args() == url.url.translate_connect_args()
    assert make_url(url.psycopg2()).query == url.url.query
    assert url.database == "db"


def test_plus_and_space_in_query_values_mean_what_libpq_reads() -> None:
    # libpq does not read '+' as a space (form encoding does); %20 is the space.
    url = DatabaseUrl.parse("postgresql://u@h/db?application_name=a%2Bb+c%20d")
    assert url.url.query["application_name"] == "a+b+c d"
    assert url.libpq().endswith("application_name=a%2Bb%2Bc%20d")


def test_unset_database_url_means_the_embedded_default_but_empty_is_refused() -> None:
    assert Settings(DATABASE_URL=None).database_url() is None
    for blank in ("", " ", "\t\n"):
        with pytest.raises(ConfigError, match="DATABASE_URL is set but"):
            Settings(DATABASE_URL=blank).database_url()


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_dagster_pg_url_is_refused_not_the_embedded_default(
    blank: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAGSTER_PG_URL", blank)
    monkeypatch.setenv("RUN_PROOF_HOME", str(tmp_path))

    with pytest.raises(ConfigError, match="DAGSTER_PG_URL is set but"):
        dagster_storage_url()
    assert not (tmp_path / ".run-proof").exists()
