"""The names and values AOS's callers rely on, compared with the documents that state them
(no database: these are constants and model fields).

docs/test-plan.md states the integrity model the plan expects; docs/aos-compat.md (the
project's own statement) and ../shared/spec/aos-compat.md (the facts it was written from,
beside the repository when it is checked out with them; absent in a standalone clone, where
that half skips) state INTEGRITY_CONFIG and the fields of each result model. A value written in the
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
OWN_COMPAT = ROOT / "docs" / "aos-compat.md"
SHARED_COMPAT = ROOT.parent / "shared" / "spec" / "aos-compat.md"
COMPAT_DOCUMENTS = pytest.mark.parametrize(
    "document", [OWN_COMPAT, SHARED_COMPAT], ids=["docs", "shared"]
)


def _aos_compat(document: Path) -> str:
    if not document.is_file():
        pytest.skip(f"{document} is not beside this checkout (a standalone clone)")
    return document.read_text(encoding="utf-8")


def test_integrity_model_is_the_one_the_test_plan_expects() -> None:
    found = re.findall(r"`integrity_model = (\w+)`", TEST_PLAN.read_text(encoding="utf-8"))
    assert found, f"{TEST_PLAN} no longer states the expected integrity_model"
    assert {INTEGRITY_CONFIG["model"]} == set(found)


@COMPAT_DOCUMENTS
def test_integrity_config_keeps_the_aos_values(document: Path) -> None:
    lines = re.findall(r"^- `INTEGRITY_CONFIG = (\{.*\})`\.?$", _aos_compat(document), re.MULTILINE)
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


@COMPAT_DOCUMENTS
def test_result_models_have_the_aos_fields_and_values(document: Path) -> None:
    stated = _stated_models(_aos_compat(document))
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


def test_the_projects_statement_keeps_every_name_of_the_facts() -> None:
    """docs/aos-compat.md, which a standalone clone has, states every model, field and value
    ../shared/spec/aos-compat.md does: the repository's copy cannot drop one."""
    facts = _stated_models(_aos_compat(SHARED_COMPAT))
    ours = _stated_models(_aos_compat(OWN_COMPAT))
    assert ours == facts
