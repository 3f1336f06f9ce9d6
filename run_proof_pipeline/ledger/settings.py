"""Where checkpoints and their keys live: RUN_PROOF_SIGNING_KEY, RUN_PROOF_PUBLIC_KEY (key
text) or RUN_PROOF_PUBLIC_KEY_FILE (a file holding it), RUN_PROOF_CHECKPOINT_DIR,
RUN_PROOF_CHECKPOINT_ORIGIN. Read from the environment each time, so a long-lived process
(Dagster) sees a changed setting on its next run.

A verify path never creates a key: only `ensure_signing_key` (checkpoint create) does.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from run_proof_pipeline.ledger.keys import (
    KeyProblem,
    SigningKey,
    VerifierKey,
    generate_signing_key,
    load_signing_key,
    refuse_key_text_as_path,
    verifier_key_from,
    write_signing_key,
)
from run_proof_pipeline.settings import ConfigError

__all__ = ["LedgerSettings", "default_origin", "load_ledger_settings"]

ORIGIN_HOST = "run-proof.local"


def default_origin(database_name: str) -> str:
    """The checkpoint origin when RUN_PROOF_CHECKPOINT_ORIGIN is unset: one log per database."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", database_name) or "_"
    return f"{ORIGIN_HOST}/{safe}"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    signing_key_path: str | None = Field(
        default=None, validation_alias=_env("RUN_PROOF_SIGNING_KEY", "signing_key_path")
    )
    public_key_value: str | None = Field(
        default=None, validation_alias=_env("RUN_PROOF_PUBLIC_KEY", "public_key_value")
    )
    public_key_file_path: str | None = Field(
        default=None,
        validation_alias=_env("RUN_PROOF_PUBLIC_KEY_FILE", "public_key_file_path"),
    )
    checkpoint_dir_path: str | None = Field(
        default=None, validation_alias=_env("RUN_PROOF_CHECKPOINT_DIR", "checkpoint_dir_path")
    )
    origin_value: str | None = Field(
        default=None, validation_alias=_env("RUN_PROOF_CHECKPOINT_ORIGIN", "origin_value")
    )

    def checkpoint_dir(self, *, create: bool = False) -> Path | None:
        """RUN_PROOF_CHECKPOINT_DIR, None when unset. A set directory that does not exist is a
        ConfigError (a mistyped one would silently drop the signed check), unless `create`:
        only `checkpoint create` (and the demo) pass it, and then it is created."""
        raw = (self.checkpoint_dir_path or "").strip()
        if not raw:
            return None
        path = Path(raw).expanduser()
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"RUN_PROOF_CHECKPOINT_DIR={raw!r}: cannot create: {exc}"
                ) from None
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise ConfigError(
                f"RUN_PROOF_CHECKPOINT_DIR={raw!r} {what}: the signed check needs the directory "
                "of the log's checkpoints (only `run-proof checkpoint create` creates it); "
                "unset it to verify against the ledger only"
            )
        return path

    def origin(self, database_name: str) -> str:
        raw = (self.origin_value or "").strip()
        return raw or default_origin(database_name)

    def public_key_setting(self) -> VerifierKey | None:
        """The verifier key of RUN_PROOF_PUBLIC_KEY (text) or RUN_PROOF_PUBLIC_KEY_FILE (a
        path), each read only as what its name says; both set is a ConfigError."""
        try:
            return verifier_key_from(
                self.public_key_value,
                self.public_key_file_path,
                text_setting="RUN_PROOF_PUBLIC_KEY",
                file_setting="RUN_PROOF_PUBLIC_KEY_FILE",
            )
        except KeyProblem as exc:
            raise ConfigError(str(exc)) from None

    def expected_origin(self) -> str | None:
        """RUN_PROOF_CHECKPOINT_ORIGIN as set (None when unset): the log a bundle must be of."""
        return (self.origin_value or "").strip() or None

    def _signing_key_path(self) -> tuple[str, Path]:
        raw = (self.signing_key_path or "").strip()
        if not raw:
            raise ConfigError("RUN_PROOF_SIGNING_KEY is not set (the path of the signing key)")
        try:
            # A key's text here would otherwise be taken as a path (and a key created there).
            refuse_key_text_as_path(
                raw, "RUN_PROOF_SIGNING_KEY", "write the private key to a file and give its path"
            )
        except KeyProblem as exc:
            raise ConfigError(str(exc)) from None
        return raw, Path(raw).expanduser()

    def signing_key(self) -> SigningKey:
        """The existing signing key; ConfigError when unset or missing (never creates)."""
        raw, path = self._signing_key_path()
        if not path.exists():
            raise ConfigError(f"RUN_PROOF_SIGNING_KEY={raw!r}: no key file there")
        try:
            return load_signing_key(path)
        except KeyProblem as exc:
            raise ConfigError(f"RUN_PROOF_SIGNING_KEY: {exc}") from None

    def ensure_signing_key(self, name: str) -> tuple[SigningKey, str | None]:
        """For `checkpoint create` only: the signing key, created when missing; the second
        value is the warning to show when it was created."""
        raw, path = self._signing_key_path()
        if path.exists():
            return self.signing_key(), None
        try:
            key = generate_signing_key(name)
            write_signing_key(path, key)
        except (KeyProblem, OSError) as exc:
            raise ConfigError(f"RUN_PROOF_SIGNING_KEY={raw!r}: cannot create: {exc}") from None
        return key, (
            f"warning: created a new Ed25519 signing key at {path} (public key "
            f"{key.verifier().text()}); keep it off the database host and give verifiers "
            "the public key (RUN_PROOF_PUBLIC_KEY)"
        )

    def verifier_key(self) -> VerifierKey | None:
        """RUN_PROOF_PUBLIC_KEY (key text) or RUN_PROOF_PUBLIC_KEY_FILE (its file; both set
        is a ConfigError), else the public half of RUN_PROOF_SIGNING_KEY; None if none is
        set. Never creates anything."""
        public = self.public_key_setting()
        if public is not None:
            return public
        if (self.signing_key_path or "").strip():
            return self.signing_key().verifier()
        return None


def load_ledger_settings() -> LedgerSettings:
    return LedgerSettings()
