"""Where the traces live, read from the environment the way the seed's plan sets it.

The seed's rule "no workarounds" is enforced here: a URL that is not PostgreSQL, or
`USE_POSTGRES_TRACES` set to anything but true, is refused before any connection is made.
So is every URL that libpq would read differently from us, or refuse only once connecting
(a bad port, an unclosed IPv6 bracket, an unknown parameter, a bad `sslmode`): one
`ConfigError` naming the variable, with every secret in the shown value masked.

No secret is ever shown: `redact` masks every place a secret can sit in a URL or a libpq
conninfo string (README "Settings" lists them), and `DatabaseUrl.redacted` renders a parsed
URL with its password and secret parameters masked.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from run_proof_pipeline.errors import ExitCode, RunProofError


class ConfigError(RunProofError, ValueError):
    """A setting is missing or invalid; the message names the variable and the value."""

    exit_code = ExitCode.USAGE
    prefix = "configuration error: "


_POSTGRES_SCHEMES = {
    "postgresql",
    "postgres",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
}
_TRUE_VALUES = {"true", "1", "yes", "on"}
_EXPECTED = "expected postgresql://user:password@host:port/dbname"
MASK = "***"

# -- redaction --------------------------------------------------------------------------------

# libpq's parameters whose values are not secret (PostgreSQL docs, libpq "Parameter Key
# Words"). Every other parameter's value is masked: the secret ones (password, sslpassword,
# oauth_client_secret, scram_client_key, scram_server_key) and any a newer libpq adds.
_PUBLIC_PARAMETERS = frozenset(
    {
        "service",
        "user",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "dbname",
        "host",
        "hostaddr",
        "port",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "require_auth",
        "min_protocol_version",
        "max_protocol_version",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "gssencmode",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "replication",
        "target_session_attrs",
        "load_balance_hosts",
        "oauth_issuer",
        "oauth_client_id",
        "oauth_scope",
        "sslkeylogfile",
    }
)
# A `key=value` in free text (a libpq conninfo string, an environment dump) whose value is
# masked: any name that says password or secret, typos included (`pasword`, `PGPASSWORD`).
_SECRET_NAME = r"[A-Za-z0-9_]*(?:pas+w|pwd|secret|token|scram_[a-z]+_key)[A-Za-z0-9_]*"
# `scheme://` and the rest of its whitespace-free token: a URL, even one too broken to parse.
_URL_TOKEN = re.compile(r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>\S*)")
# A URL query parameter (after `?`, `&` or `;`); its value ends at `&`, `#` or whitespace.
_QUERY_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&#;?\s]+)=(?P<value>[^&#\s]*)")
# A conninfo `key = value`: quoted with '...' (backslash escapes, maybe unterminated), or
# unquoted up to whitespace (backslash escapes too). Not after ?, & or ; (a URL's query).
_CONNINFO_SECRET = re.compile(
    rf"(?<![A-Za-z0-9_?&;%])(?P<key>{_SECRET_NAME})(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:\\[\s\S]|[^'\\])*'?|(?:\\[\s\S]|[^\s\\])+)",
    re.IGNORECASE,
)
# Any conninfo `key = value`, for a whole string known to be one.
_CONNINFO_PAIR = re.compile(
    r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:\\[\s\S]|[^'\\])*'?|(?:\\[\s\S]|[^\s\\])*)"
)
# SQL's `CREATE|ALTER ROLE ... PASSWORD 'secret'`, as a server log or error may echo it
# (PostgreSQL logs the statement of a failed command).
_SQL_PASSWORD = re.compile(r"(?P<key>\bPASSWORD\s+)(?P<value>'(?:''|[^'])*'?)", re.IGNORECASE)
# What a mask looks like once shown (quoted, or with the punctuation around it): redacting
# twice changes nothing.
_ALREADY_MASKED = re.compile(r"'?\*\*\*['\")\]}>,;.]*")


def _mask_userinfo(match: re.Match[str]) -> str:
    """A URL's password is everything from the first ':' of its userinfo to the LAST '@' of
    its token, whatever parser reads it: an unencoded '@', '/', '?' or '#' in a password
    stays masked, at the price of masking more of an odd URL than its password."""
    rest = match["rest"]
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at >= 0 else -1
    if colon < 0:
        return match[0]
    return f"{match['scheme']}{rest[:colon]}:{MASK}{rest[at:]}"


def _mask_query_value(match: re.Match[str]) -> str:
    key = unquote_to_bytes(match["key"]).decode("utf-8", "replace")
    value = match["value"]
    if not value or key in _PUBLIC_PARAMETERS or _ALREADY_MASKED.fullmatch(value):
        return match[0]
    return f"{match['lead']}{match['key']}={MASK}"


def _mask_conninfo_value(match: re.Match[str]) -> str:
    if _ALREADY_MASKED.fullmatch(match["value"]):
        return match[0]
    return f"{match['key']}{match['eq']}{MASK}"


def redact(text: str) -> str:
    """`text` with every secret masked as `***`, for errors, logs, metadata and reports:
    URL passwords (an unencoded '@' or ':' in them included), the values of `?password=`,
    `?sslpassword=` and every other query parameter not known to be public, libpq conninfo
    secrets (`password=secret`, `password = 'a b\\' c'`), and SQL's `PASSWORD 'secret'`."""
    text = _URL_TOKEN.sub(_mask_userinfo, text)
    text = _QUERY_PARAMETER.sub(_mask_query_value, text)
    text = _CONNINFO_SECRET.sub(_mask_conninfo_value, text)
    return _SQL_PASSWORD.sub(lambda m: f"{m['key']}'{MASK}'", text)


def _redact_conninfo(raw: str) -> str:
    """A whole conninfo string: every value but those of public parameters is masked."""

    def mask(match: re.Match[str]) -> str:
        if match["key"] in _PUBLIC_PARAMETERS or not match["value"]:
            return match[0]
        return f"{match['key']}{match['eq']}{MASK}"

    return redact(_CONNINFO_PAIR.sub(mask, raw))


def _redact_value(raw: str) -> str:
    """A value given as a URL, shown in its refusal: everything between the first ':' after
    `scheme://` and the last '@' is masked, spaces included (a token-wise `redact` would stop
    at a space in an unencoded password)."""
    head, sep, rest = raw.partition("://")
    if not sep:
        head, rest = "", raw
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at >= 0 else -1
    if colon >= 0:
        rest = f"{rest[:colon]}:{MASK}{rest[at:]}"
    return redact(head + sep + rest)


# -- parsing ----------------------------------------------------------------------------------

# libpq's enumerated and integer parameters, checked before connecting (PostgreSQL docs,
# libpq "Parameter Key Words"): libpq itself would refuse them only when connecting.
_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
}
_INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
_INT_MAX = 2**31 - 1
# Set by the URL's own parts; given again as a query parameter, which one wins is a
# question of the driver: refused.
_URL_PARTS = ("user", "password", "host", "port", "dbname")
_CONNINFO_START = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"[0-9]{1,5}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@functools.cache
def _libpq_parameters() -> frozenset[str]:
    """The parameters the libpq that psycopg loaded knows (an unknown one fails to connect)."""
    import psycopg

    known = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}
    return frozenset(known | {"password"})


@dataclass(frozen=True)
class _Parts:
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: dict[str, str]


class _UrlReader:
    """Reads one value as a PostgreSQL URL; every refusal names the variable and shows the
    value with its secrets masked, on one line."""

    def __init__(self, raw: str, variable: str) -> None:
        self.raw = raw
        self.variable = variable
        looks_conninfo = "://" not in raw and _CONNINFO_START.match(raw) is not None
        self.shown = _redact_conninfo(raw) if looks_conninfo else _redact_value(raw)

    def refuse(self, why: str) -> ConfigError:
        return ConfigError(f"{self.variable}={self.shown!r} {why}")

    def read(self) -> tuple[str, _Parts]:
        value = self.raw.strip()
        if not value:
            what = "empty" if not self.raw else "only whitespace"
            raise ConfigError(
                f"{self.variable} is set but {what}; unset it to use the embedded default "
                "PostgreSQL, or set it to a URL (postgresql://user:password@host:port/dbname)"
            )
        if "://" not in value and _CONNINFO_START.match(value):
            raise self.refuse(
                "is a libpq key=value connection string, not a URL; write it as "
                "postgresql://user:password@host:port/dbname (percent-encode the password)"
            )
        scheme, sep, rest = value.partition("://")
        if not sep or not _SCHEME.fullmatch(scheme):
            raise self.refuse(f"is not a valid database URL; {_EXPECTED}")
        if scheme.lower() not in _POSTGRES_SCHEMES:
            raise self.refuse(
                f"is not a PostgreSQL URL (scheme {scheme!r}). Traces live in PostgreSQL only; "
                "no other store is used as a fallback."
            )
        if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
            raise self.refuse(
                "contains whitespace or a control character; percent-encode it (a space is %20)"
            )
        return scheme.lower(), self._parts(rest)

    def _parts(self, rest: str) -> _Parts:
        if "#" in rest:
            raise self.refuse("contains '#': percent-encode it as %23 (in a password too)")
        end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, tail = rest[:end], rest[end:]
        if "@" in tail:
            # The host ends at the first '/' or '?': an '@' after it means a password holding
            # '/' or '?' unencoded (the host would be a piece of the password) or an
            # unencoded '@' in the path or query. Either way, no reading is sure.
            raise self.refuse(
                "has an '@' after the host: percent-encode '@' as %40, and '/' and '?' in a "
                "password as %2F and %3F"
            )
        userinfo, at, hostport = authority.rpartition("@")
        username = password = None
        if at:
            # The userinfo ends at the LAST '@': a host never holds one, a password may.
            user_text, colon, password_text = userinfo.partition(":")
            username = self._decode(user_text, "user name")
            password = self._decode(password_text, "password") if colon else None
        host, port = self._host_port(hostport)
        path, _, query_text = tail.partition("?")
        database = self._decode(path[1:], "database name") if path else None
        query = self._query(query_text)
        if host is not None and host.startswith("/"):
            # A socket directory (%2F-encoded): libpq takes it as host=, and SQLAlchemy can
            # render it back only as a query parameter.
            if "host" in query:
                raise self.refuse(
                    "gives host twice, as a socket directory and as the query parameter "
                    "'host'; give it once"
                )
            query["host"], host = host, None
        given = {"user": username, "password": password, "host": host, "port": port}
        given["dbname"] = database or None
        for key in _URL_PARTS:
            if key in query and given[key] is not None:
                raise self.refuse(
                    f"gives {key} twice, in the URL and as the query parameter {key!r}; "
                    "give it once"
                )
        if not database and not query.get("dbname"):
            raise self.refuse("names no database")
        return _Parts(username, password, host, port, database or None, query)

    def _decode(self, text: str, what: str) -> str:
        if _BAD_PERCENT.search(text):
            raise self.refuse(
                f"has a '%' in its {what} that is not followed by two hex digits "
                "(write a '%' as %25)"
            )
        try:
            decoded = unquote_to_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise self.refuse(f"has a percent-encoded {what} that is not UTF-8") from None
        if "\x00" in decoded:
            raise self.refuse(f"has %00 in its {what}; PostgreSQL cannot take a NUL")
        return decoded

    def _host_port(self, hostport: str) -> tuple[str | None, int | None]:
        if hostport.startswith("["):
            close = hostport.find("]")
            if close < 0:
                raise self.refuse("has an unclosed '[' in its host; an IPv6 host is written [::1]")
            bracketed = self._decode(hostport[1:close], "host")
            if "%" in bracketed:
                raise self.refuse("has an IPv6 zone (%...) in its host, which is not supported")
            try:
                ipaddress.IPv6Address(bracketed)
            except ValueError:
                raise self.refuse(
                    f"has {bracketed!r} in brackets, which is not an IPv6 address"
                ) from None
            after = hostport[close + 1 :]
            if after and not after.startswith(":"):
                raise self.refuse("has text after the IPv6 host's ']' that is not :port")
            return bracketed, self._port(after[1:]) if after else None
        if "]" in hostport:
            raise self.refuse("has a ']' in its host without a '['")
        if "," in hostport:
            raise self.refuse("names several hosts; give one host")
        if hostport.count(":") > 1:
            raise self.refuse("has an IPv6 host without brackets; write it as [::1]")
        host_text, colon, port_text = hostport.partition(":")
        host = self._decode(host_text, "host") or None
        return host, self._port(port_text) if colon else None

    def _port(self, text: str) -> int:
        if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
            raise self.refuse(f"has port {text!r}; a port is a number from 1 to 65535")
        return int(text)

    def _query(self, text: str) -> dict[str, str]:
        query: dict[str, str] = {}
        for item in filter(None, text.split("&")):
            key_text, eq, value_text = item.partition("=")
            if not eq:
                raise self.refuse("has a query part that is not key=value")
            key = self._decode(key_text, "query parameter name")
            value = self._decode(value_text, "query parameter value")
            if key not in _libpq_parameters():
                named = repr(key) if _NAME.fullmatch(key) else "a name"
                raise self.refuse(
                    f"has {named} as a query parameter, which is not a libpq connection "
                    "parameter (PostgreSQL docs: libpq, Parameter Key Words)"
                )
            if key in query:
                raise self.refuse(f"gives the query parameter {key!r} twice; give it once")
            self._check_value(key, value)
            query[key] = value
        return query

    def _check_value(self, key: str, value: str) -> None:
        if key in _CHOICES and value not in _CHOICES[key]:
            raise self.refuse(
                f"has {key}={value!r}; libpq takes one of: {', '.join(_CHOICES[key])}"
            )
        if key in _INTEGERS and (not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > _INT_MAX):
            raise self.refuse(f"has {key}={value!r}; it must be a whole number of 0 or more")
        if key == "port":
            self._port(value)


def _render(scheme: str, parts: _Parts, *, masked: bool = False) -> str:
    """A URL that libpq, and SQLAlchemy's `make_url`, read back exactly: every part
    percent-encoded (a space as %20, never '+'), an IPv6 host in brackets; with `masked`,
    the password and every parameter not known to be public as `***`."""
    text = f"{scheme}://"
    if parts.username is not None or parts.password is not None:
        text += _encode(parts.username or "")
        if parts.password is not None:
            text += ":" + (MASK if masked else _encode(parts.password))
        text += "@"
    if parts.host is not None and ":" in parts.host:
        text += f"[{parts.host}]"
    elif parts.host is not None:
        text += _encode(parts.host)
    if parts.port is not None:
        text += f":{parts.port}"
    text += "/" + _encode(parts.database or "")
    if parts.query:
        text += "?" + "&".join(
            f"{_encode(key)}="
            + (MASK if masked and key not in _PUBLIC_PARAMETERS else _encode(value))
            for key, value in sorted(parts.query.items())
        )
    return text


def _encode(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated PostgreSQL URL, rendered for each driver that needs it. Its repr and str
    are the redacted form, so that it can be logged or shown in an assertion safely."""

    url: URL

    @classmethod
    def parse(cls, raw: str, *, variable: str = "DATABASE_URL") -> DatabaseUrl:
        _, parts = _UrlReader(raw, variable).read()
        url = URL.create(
            "postgresql+psycopg",
            username=parts.username,
            password=parts.password,
            host=parts.host,
            port=parts.port,
            database=parts.database,
            query=parts.query,
        )
        return cls(url)

    def _parts(self) -> _Parts:
        query = {key: str(value) for key, value in self.url.query.items()}
        return _Parts(
            self.url.username,
            None if self.url.password is None else str(self.url.password),
            self.url.host,
            self.url.port,
            self.url.database,
            query,
        )

    def sqlalchemy(self) -> str:
        """For SQLAlchemy with psycopg 3 (sync and async engines; alembic's config)."""
        return _render("postgresql+psycopg", self._parts())

    def psycopg2(self) -> str:
        """For dagster-postgres, which needs the psycopg2 driver (it parses with SQLAlchemy)."""
        return _render("postgresql+psycopg2", self._parts())

    def libpq(self) -> str:
        """A plain `postgresql://` conninfo URL for psycopg.connect and psql."""
        return _render("postgresql", self._parts())

    def redacted(self) -> str:
        """For output: the password and every secret query parameter shown as `***`."""
        return _render("postgresql", self._parts(), masked=True)

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()!r})"

    @property
    def database(self) -> str:
        return self.url.database or str(self.url.query.get("dbname") or "")


class Settings(BaseSettings):
    """The seed's environment: DATABASE_URL and USE_POSTGRES_TRACES."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url_raw: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    use_postgres_traces_raw: str | None = Field(
        default=None, validation_alias=AliasChoices("USE_POSTGRES_TRACES", "use_postgres_traces")
    )

    def database_url(self) -> DatabaseUrl | None:
        """The configured URL, or None when unset (callers then use the embedded default).
        Set but empty or blank is refused: `DATABASE_URL=$UNSET_VAR` in a CI recipe must not
        silently prove the demo database."""
        if self.database_url_raw is None:
            return None
        return DatabaseUrl.parse(self.database_url_raw)

    def require_postgres_traces(self, *, unset_means_true: bool = True) -> None:
        raw = self.use_postgres_traces_raw
        if raw is None or not raw.strip():
            if unset_means_true:
                return
            raise ConfigError(
                "USE_POSTGRES_TRACES is not set; the run-proof plan requires "
                "USE_POSTGRES_TRACES=true (traces live in PostgreSQL only)"
            )
        if raw.strip().lower() not in _TRUE_VALUES:
            raise ConfigError(
                f"USE_POSTGRES_TRACES={raw!r} is not supported: traces live in PostgreSQL only, "
                "so it must be true (there is no other store to fall back to)"
            )


def load_settings() -> Settings:
    settings = Settings()
    settings.require_postgres_traces()
    settings.database_url()  # validate eagerly so a bad URL fails before any work
    return settings
