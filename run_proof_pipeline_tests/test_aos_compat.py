"""The names and values AOS's callers rely on, compared with the documents that state them
(no database: these are constants and model fields).

docs/test-plan.md states the integrity model the plan expects; ../shared/spec/aos-compat.md
(beside the repository when the project is checked out with its spec, absent in a standalone
clone) states INTEGRITY_CONFIG and the fields of each result model. A value written in the
code and again, by hand, in the test would pass whatever the code said: the expected side
here is read from the document."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

from run_proof_pipeline import coordinator
from run_proof_pipeline.coordinator import INTEGRITY_CONFIG

ROOT = Path(__file__).resolve().parents[1]
TEST_PLAN = ROOT / "docs" / "test-plan.md"
AOS_COMPAT = ROOT.parent / "shared" / "spec" / "aos-compat.md"


def _aos_compat() -> str:
    if not AOS_COMPAT.is_file():
        pytest.skip(f"{AOS_COMPAT} is not beside this checkout (a standalone clone)")
    return AOS_COMPAT.read_text(encoding="utf-8")


def test_integrity_model_is_the_one_the_test_plan_expects() -> None:
    found = re.findall(r"`integrity_model = (\w+)`", TEST_PLAN.read_text(encoding="utf-8"))
    assert found, f"{TEST_PLAN} no longer states the expected integrity_model"
    assert {INTEGRITY_CONFIG["model"]} == set(found)


def test_integrity_config_keeps_the_aos_values() -> None:
    lines = re.findall(r"^- `INTEGRITY_CONFIG = (\{.*\})`\.?$", _aos_compat(), re.MULTILINE)
    assert len(lines) == 1, "aos-compat.md states INTEGRITY_CONFIG once, on one line"
    stated = ast.literal_eval(lines[0])
    assert INTEGRITY_CONFIG == stated
    assert list(INTEGRITY_CONFIG) == list(stated)  # the same keys in the same order


def _stated_models(text: str) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """`- `Model` ...: `field` (`VALUE`, ...), `field`, ...` lines: model -> (fields in order,
    field -> the values listed for it)."""
    models = {}
    for name, body in re.findall(
        r"^- `([A-Z]\w+)`[^:]*: (.*?)(?=^- |^\n|^#)", text, re.MULTILINE | re.DOTALL
    ):
        fields: list[str] = []
        values: dict[str, list[str]] = {}
        for field, parenthesised in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", body):
            fields.append(field)
            listed = re.findall(r"`([A-Z_]+)`", parenthesised)
            if listed:
                values[field] = listed
        models[name] = (fields, values)
    return models


def test_result_models_have_the_aos_fields_and_values() -> None:
    stated = _stated_models(_aos_compat())
    assert set(stated) == {
        "RunProofResult",
        "IntegrityVerificationResult",
        "TraceSummary",
        "TraceStepSummary",
    }
    for name, (fields, values) in stated.items():
        model = getattr(coordinator, name)
        ours = list(model.model_fields)
        missing = [f for f in fields if f not in ours]
        assert missing == [], f"{name} lacks {missing}"
        # Ours may add fields, after AOS's, which keep their order ("extend, not rename").
        assert [f for f in ours if f in fields] == fields, name
        for field, listed in values.items():
            allowed = set(typing.get_args(model.model_fields[field].annotation))
            # Each value AOS's callers may see is one ours can produce; ours may add (UNSEALED).
            assert set(listed) <= allowed, f"{name}.{field}: {set(listed) - allowed}"
