"""docs/reference/yaml.md documents every key of the process format, so the page can't drift from it.

Every property of every definition in the JSON Schema (`flowengine schema`, i.e.
`ProcessSpec.model_json_schema(by_alias=True)`, and the catalogue's) must appear in the page as `code`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowengine.definition.schema import CatalogSpec, ProcessSpec

PAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "reference" / "yaml.md"


def keys(schema: dict[str, Any]) -> list[tuple[str, str]]:
    found = [("(top level)", name) for name in schema.get("properties", {})]
    for definition, body in schema.get("$defs", {}).items():
        found.extend((definition, name) for name in body.get("properties", {}))
    return found


ALL_KEYS = sorted(set(keys(ProcessSpec.model_json_schema(by_alias=True)) +
                      [("CatalogSpec", k) for _, k in keys(CatalogSpec.model_json_schema(by_alias=True))]))


@pytest.mark.parametrize(("definition", "key"), ALL_KEYS, ids=[f"{d}.{k}" for d, k in ALL_KEYS])
def test_key_is_documented(definition: str, key: str) -> None:
    assert f"`{key}`" in PAGE.read_text(encoding="utf-8"), (
        f"docs/reference/yaml.md does not document `{key}` of {definition}")


def test_schema_is_the_one_the_cli_prints() -> None:
    import json

    from click.testing import CliRunner

    from flowengine.cli import main

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ProcessSpec.model_json_schema(by_alias=True)
    assert len(ALL_KEYS) > 90  # every definition was found
