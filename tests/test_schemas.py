"""The shipped JSON Schemas (formal/cli/schemas/, docs/schemas.md) are valid, agree with the
model they describe, and accept the repository's own files."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from formal.cli import schemas
from formal.engines.search import ENGINES
from formal.model import arch, jsondoc
from formal.model import events as ev
from formal.model.properties import PROPERTIES
from formal.model.state import CONFIGS
from formal.model.trace import _OPTIONAL
from tests.conftest import TRACES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", schemas.KINDS + schemas.OUTPUTS)
def test_every_schema_is_a_valid_draft_2020_12_schema(kind):
    Draft202012Validator.check_schema(schemas.schema(kind))


def test_the_trace_schema_has_every_event_with_exactly_its_fields():
    defs = schemas.schema("trace")["$defs"]
    assert defs["event"]["properties"]["op"]["enum"] == sorted(ev.EVENT_TYPES)
    for op, cls in ev.EVENT_TYPES.items():
        names = [f.name for f in fields(cls)]
        assert list(defs[op]["properties"]) == ["op", *names], op
        assert defs[op].get("required", []) == [n for n in names
                                                if n not in _OPTIONAL.get(op, {})], op
    assert schemas.schema("trace")["properties"]["config"]["enum"] == list(CONFIGS)
    page = schemas.schema("trace")["properties"]["page"]["properties"]
    assert page["size"]["enum"] == list(arch.PAGE_SIZES)


def test_the_proof_script_schema_names_the_engines_properties_and_configs():
    ob = schemas.schema("proofs")["$defs"]["obligation"]["properties"]
    assert ob["engine"]["enum"] == list(ENGINES)
    assert ob["properties"]["items"]["enum"] == list(PROPERTIES)
    assert ob["config"]["enum"] == list(CONFIGS)


@pytest.mark.parametrize("path,kind", [
    *[(p, "trace") for p in sorted(TRACES.glob("*.json")) if p.name != "expected.json"],
    (TRACES / "expected.json", "expected"), (ROOT / "proofs" / "suite.json", "proofs")],
    ids=lambda x: x.name if isinstance(x, Path) else x)
def test_the_repository_files_are_valid(path, kind):
    schemas.check(jsondoc.load(path), kind, str(path))
