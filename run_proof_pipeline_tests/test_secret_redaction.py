"""Issue 12: no secret ever leaks, wherever it sits in a URL or a libpq conninfo string.

Unit cases: `redact` on every form (the issue's three observed strings included) and
`DatabaseUrl.redacted`. Real cases: login roles with passwords holding '@', ':', '/', '?',
'%', a space and a quote connect through every URL form `DatabaseUrl` accepts, and
`run-proof verify` as a process on those URLs shows no secret in its banner or its one
error line.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.embedded.commands import log_tail
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, redact
from run_proof_pipeline.store.engine import ResolvedDatabase, run_on_connection
from run_proof_pipeline_tests.support.stores import password_store
from run_proof_pipeline_tests.test_url_settings import verify_process


def _leaked(text: str, pieces: tuple[str, ...]) -> list[str]:
    return [piece for piece in pieces if piece in text]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # The three observed strings.
        ("DATABASE_URL=postgresql://app@host/db?password=S3cretPW", ("S3cretPW",)),
        (
            "invalid connection string: host=db.example port=5432 user=app "
            "password=S3cretKV dbname=aos",
            ("S3cretKV",),
        ),
        ("postgresql://app:S3cr@tPW@host/db", ("S3cr", "tPW")),
        # userinfo: ':' and several '@', percent-encoded, SQLAlchemy's driver forms.
        ("postgresql://app:Pa:ss:Wd@host:5432/db", ("Pa:ss", "ss:Wd")),
        ("postgresql+psycopg://app:Ab%40Cd%3AEf@host/db", ("Ab%40", "Cd%3AEf", "Ab")),
        ("postgres://app:Gh@Ij@Kl@[::1]:5432/db", ("Gh", "Ij", "Kl@")),
        ("postgresql+psycopg2://:OnlyPw@host/db", ("OnlyPw",)),
        # unencoded '/', '?', '#' or a space in a password: every parser reads it wrong,
        # the mask still covers all of it.
        ("postgresql://app:Mn/Op@host/db", ("Mn/Op", "Op@")),
        ("postgresql://app:Qr?St@host/db", ("Qr", "St")),
        ("postgresql://app:Uv#Wx@host/db", ("Uv", "Wx")),
        # query secrets, whatever else the query holds, encoded names included.
        ("postgresql://app@h/db?sslmode=require&password=Yz1pw&x=1", ("Yz1pw",)),
        ("postgresql://app@h/db?sslpassword=KeyPw2", ("KeyPw2",)),
        ("postgresql://app@h/db?oauth_client_secret=Oc3&scram_client_key=Sk4", ("Oc3", "Sk4")),
        ("postgresql://app@h/db?pass%77ord=EncName5", ("EncName5",)),
        ("postgresql://app@h/db?pasword=Typo6", ("Typo6",)),
        ("postgresql://app@h/db?password=Pct%2F7%26x", ("Pct", "7%26x")),
        # libpq conninfo: quoted with escapes, spaces around '=', unterminated, any case.
        ("host=h password='Qa Rb\\' Sc' dbname=d", ("Qa", "Rb", "Sc")),
        ("host=h password = 'Td Ue' dbname=d", ("Td", "Ue")),
        ("host=h password=Vf\\ Wg dbname=d", ("Vf", "Wg")),
        ("host=h password='Xh Yi", ("Xh", "Yi")),
        ("host=h PASSWORD=Zj8 sslpassword=Ak9", ("Zj8", "Ak9")),
        ("host=h password=a&Bl0=Cm1 dbname=d", ("Bl0", "Cm1")),
        ("PGPASSWORD=Dn2 run-proof verify", ("Dn2",)),
        # SQL as a server log echoes it.
        ("STATEMENT:  ALTER ROLE app PASSWORD 'Eo''3 Fp'", ("Eo", "Fp")),
        # several in one text, and inside JSON.
        (
            'a postgresql://u:Gq4@h/d b host=h password=Hr5 c {"url": "postgres://u@h/d?password=Is6"}',
            ("Gq4", "Hr5", "Is6"),
        ),
    ],
)
def test_redact_masks_every_form_of_secret(text: str, pieces: tuple[str, ...]) -> None:
    shown = redact(text)

    assert _leaked(shown, pieces) == []
    assert "***" in shown
    assert redact(shown) == shown  # redacting twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://run_proof:***@127.0.0.1:55432/run_proof",
        "postgresql://u@h:5432/db?sslmode=require&connect_timeout=10&application_name=x",
        "postgresql://u@[::1]:5432/db",
        "host=h port=5432 dbname=d sslmode=require",
        'connection to server at "127.0.0.1", port 5 failed: password authentication failed',
        "DATABASE_URL='postgresql://app@host/db?password=***' has sslmode='bogus'",
    ],
)
def test_redact_leaves_text_without_a_secret_as_it_is(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "postgresql://app@host/db?password=S3cretPW&sslmode=require",
            "postgresql://app@host/db?password=***&sslmode=require",
        ),
        ("postgresql://app:S3cr@tPW@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:Ab%40Cd@host:5433/db", "postgresql://app:***@host:5433/db"),
        (
            "postgresql://app@host/db?sslpassword=K1&oauth_client_secret=K2&application_name=a",
            "postgresql://app@host/db?application_name=a&oauth_client_secret=***&sslpassword=***",
        ),
    ],
)
def test_database_url_redacted_masks_the_password_wherever_it_sits(raw: str, shown: str) -> None:
    url = DatabaseUrl.parse(raw)

    assert url.redacted() == shown
    assert str(url) == shown and repr(url) == f"DatabaseUrl({shown!r})"
    banner = ResolvedDatabase(url, embedded=False).banner()
    assert banner == f"Using DATABASE_URL={shown}"


@pytest.mark.parametrize(
    "raw",
    [
        "host=127.0.0.1 user=app password=S3cretKV dbname=aos",
        "  password='Qa Rb\\' Sc' host=h",
        "postgresql://app:S3cr@tPW@host:notaport/db",
        "postgresql://app:S3cr@tPW@[::1/db",
        "postgresql://app:Mn/Op@host/db",
        "postgresql://app:Pw Sp@host/db",
        "postgresql://app@host/db?password=S3cretPW&sslmode=bogus",
        "postgresql://app@host/db?password=S3cretPW&connect_timeout=abc",
        "postgresql://app@host/db?pasword=S3cretPW",
        "mysql://app:S3cretPW@host/db",
        "app:S3cr@tPW@host/db",
    ],
)
def test_refusals_show_the_value_with_its_secret_masked(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        DatabaseUrl.parse(raw)

    message = str(refused.value)
    assert _leaked(message, ("S3cret", "S3cr", "tPW", "Qa", "Rb", "Mn/Op", "Op@", "Pw Sp")) == []
    assert "***" in message and "\n" not in message


# -- real roles, real connections --------------------------------------------------------------

# Hold every character that needs care in a URL; percent-encoded wherever it is written.
ENCODED_PASSWORD = "Kx9@Vb:Tq/Ws?Ly%Mz Np'Rd#"
# Written unencoded in the `user:pw@with@at@host` form: '@' and ':' only.
AT_PASSWORD = "Qv7Lp@Xw3Rt:Mn8Bk@Zt5Hd"
PIECES = ("Kx9", "Vb", "Tq", "Ws", "Ly", "Mz", "Np", "Rd", "Qv7Lp", "Xw3Rt", "Mn8Bk", "Zt5Hd")
TENANT, RUN = "tenant-r", "run-r"


@dataclass(frozen=True)
class Roles:
    port: int
    database: str
    encoded_role: str
    at_role: str

    def forms(self) -> dict[str, str]:
        """Every form a password can take in DATABASE_URL, each for a role it logs in."""
        where = f"127.0.0.1:{self.port}/{self.database}"
        pw = quote(ENCODED_PASSWORD, safe="")
        return {
            "userinfo-encoded": f"postgresql://{self.encoded_role}:{pw}@{where}",
            "query-password": f"postgresql://{self.encoded_role}@{where}?password={pw}",
            "query-with-sslpassword": (
                f"postgresql://{self.encoded_role}@{where}?sslmode=prefer&password={pw}"
                "&sslpassword=Sslk3yPw"
            ),
            "at-and-colon-unencoded": f"postgresql://{self.at_role}:{AT_PASSWORD}@{where}",
            "driver-scheme": f"postgresql+psycopg2://{self.at_role}:{AT_PASSWORD}@{where}",
        }


@pytest.fixture(scope="module")
def roles(pg_server: LocalPostgres) -> Iterator[Roles]:
    passwords = (("enc_pw", ENCODED_PASSWORD), ("at_pw", AT_PASSWORD))
    with password_store(pg_server, "redact", passwords, (TENANT, RUN), steps=2) as made:
        yield Roles(pg_server.port, made.database, *made.roles)


FORMS = [
    "userinfo-encoded",
    "query-password",
    "query-with-sslpassword",
    "at-and-colon-unencoded",
    "driver-scheme",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_accepted_form_logs_in_with_its_password_and_shows_none(
    roles: Roles, form: str
) -> None:
    url = DatabaseUrl.parse(roles.forms()[form])
    expected_role = roles.at_role if "at" in form or "driver" in form else roles.encoded_role

    async def who(conn: AsyncConnection) -> str:
        return str((await conn.exec_driver_sql("SELECT current_user")).scalar_one())

    # libpq reads the rendered URL (psycopg, psql), SQLAlchemy the parsed one (the engines).
    with psycopg.connect(url.libpq()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (expected_role,)
    assert run_on_connection(url, who) == expected_role
    assert _leaked(url.redacted() + repr(url) + str(url), PIECES + ("Sslk3yPw",)) == []


def test_wrong_password_is_refused_by_the_server(roles: Roles) -> None:
    # The passwords are really checked: the same URL with another password does not log in.
    wrong = roles.forms()["query-password"].replace("Kx9", "Kx8")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(DatabaseUrl.parse(wrong).libpq()).close()


def _slow(*values: object, id: str) -> Any:
    return pytest.param(*values, id=id, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    "form",
    [
        "query-password",
        _slow("at-and-colon-unencoded", id="at-and-colon-unencoded"),
        _slow("userinfo-encoded", id="userinfo-encoded"),
        _slow("query-with-sslpassword", id="query-with-sslpassword"),
    ],
)
def test_verify_process_on_a_secret_url_proves_and_shows_no_secret(
    roles: Roles, tmp_path: Path, form: str
) -> None:
    raw = roles.forms()[form]

    completed = verify_process(raw, tmp_path, tenant_id=TENANT, run_id=RUN)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[0] == (
        f"Using DATABASE_URL={DatabaseUrl.parse(raw).redacted()}"
    )
    assert "verification_status: VERIFIED" in completed.stdout
    assert _leaked(completed.stdout + completed.stderr, PIECES + ("Sslk3yPw",)) == []


@pytest.mark.parametrize(
    ("form", "change", "code", "line_starts"),
    [
        # The server refuses: the one error line names the failure, not the password.
        (
            "at-and-colon-unencoded",
            ("Qv7Lp", "Qv7Lq"),
            5,
            "run-proof: database unreachable: connection failed:",
        ),
        _slow(
            "query-password",
            ("/redact_", "/absent_"),
            5,
            "run-proof: database unreachable: connection failed:",
            id="query-password-absent-database",
        ),
        # Refused before connecting, the value shown masked.
        _slow(
            "at-and-colon-unencoded",
            ("127.0.0.1:", "127.0.0.1:x"),
            2,
            "run-proof: configuration error: DATABASE_URL='postgresql://at_pw_",
            id="at-and-colon-bad-port",
        ),
        _slow(
            "query-password",
            ("?password=", "?sslmode=bogus&password="),
            2,
            "run-proof: configuration error: DATABASE_URL='postgresql://enc_pw_",
            id="query-password-bad-sslmode",
        ),
    ],
)
def test_verify_process_error_line_shows_no_secret(
    roles: Roles,
    tmp_path: Path,
    form: str,
    change: tuple[str, str],
    code: int,
    line_starts: str,
) -> None:
    raw = roles.forms()[form].replace(*change)

    completed = verify_process(raw, tmp_path, tenant_id=TENANT, run_id=RUN)

    assert completed.returncode == code, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line_starts), lines
    assert _leaked(completed.stdout + completed.stderr, PIECES + ("Qv7Lq",)) == []


def test_verify_process_refuses_a_conninfo_string_showing_no_password(
    roles: Roles, tmp_path: Path
) -> None:
    conninfo = (
        f"host=127.0.0.1 port={roles.port} dbname={roles.database} user={roles.at_role} "
        f"password='{AT_PASSWORD}'"
    )
    # A conninfo libpq would accept as it is: the refusal is ours, not the server's.
    psycopg.connect(conninfo).close()

    completed = verify_process(conninfo, tmp_path, tenant_id=TENANT, run_id=RUN)

    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "run-proof: configuration error: DATABASE_URL="
        f"'host=127.0.0.1 port={roles.port} dbname={roles.database} user={roles.at_role} "
        "password=***' is a libpq key=value connection string, not a URL; write it as "
        "postgresql://user:***@host:port/dbname (percent-encode the password)"
    ]
    assert _leaked(completed.stdout + completed.stderr, PIECES) == []


def test_server_log_tail_in_local_postgres_errors_hides_a_logged_password(
    pg_server: LocalPostgres,
) -> None:
    # The server logs the statement of a failed command: a failed ALTER ROLE with a password
    # puts the password in server.log, whose last lines LocalPostgresError messages quote.
    secret = f"Lg{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url(driver=""), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(f"absent_{secret}"), sql.Literal(secret)
                )
            )
    logged = pg_server.log_path.read_text(errors="replace")
    assert f"PASSWORD '{secret}'" in logged  # the attack is real: the log holds it

    tail = log_tail(pg_server.log_path)

    assert f"absent_{secret}" in tail  # the same lines, ...
    assert f"PASSWORD '{secret}'" not in tail and "PASSWORD '***'" in tail  # ... masked
