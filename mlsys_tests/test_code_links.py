"""From the UI to the code in one click: every asset page links to the function that builds it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import LocalFileCodeReference, UrlCodeReference

from mlsys_assets import definitions
from mlsys_assets.definitions import ASSETS, with_code_links

PACKAGE = Path(definitions.__file__).parent


def _references(assets) -> dict[str, list]:
    return {spec.key.to_user_string(): spec.metadata["dagster/code_references"].code_references
            for asset in assets for spec in asset.specs}


def test_every_asset_links_to_the_line_that_defines_it(monkeypatch) -> None:
    monkeypatch.delenv("MLSYS_SOURCE_URL", raising=False)
    references = _references(with_code_links(ASSETS))
    assert len(references) == 16
    for key, (reference,) in references.items():
        assert isinstance(reference, LocalFileCodeReference), key
        path = Path(reference.file_path)
        assert path.is_relative_to(PACKAGE) and path.exists(), key
        # The line of the decorator that makes the function an asset, then the function itself.
        following = path.read_text().splitlines()[reference.line_number - 1:]
        definition = next(line for line in following if line.startswith("def "))
        assert following[0].startswith(("@asset(", "@report_asset(")), f"{key} links to {following[0]!r}"
        assert re.match(rf"def (\w+_)?{key.rsplit('/', 1)[-1]}\(", definition), f"{key} links to {definition!r}"


def test_a_configured_repository_turns_them_into_repository_links(monkeypatch) -> None:
    monkeypatch.setenv("MLSYS_SOURCE_URL", "https://github.com/acme/mlsys/")
    monkeypatch.setenv("MLSYS_SOURCE_BRANCH", "release")
    references = _references(with_code_links(ASSETS))
    (reference,) = references["ml/model_registry"]
    assert isinstance(reference, UrlCodeReference)
    assert reference.url.startswith("https://github.com/acme/mlsys/tree/release/mlsys_assets/ml/evaluation_assets.py#L")


def test_a_repository_setting_that_is_not_an_address_fails_with_one_line(monkeypatch) -> None:
    monkeypatch.setenv("MLSYS_SOURCE_URL", "git@github.com:acme/mlsys.git")
    with pytest.raises(ValueError, match="MLSYS_SOURCE_URL must be the repository's web address"):
        with_code_links(ASSETS)


def test_the_definitions_carry_the_links() -> None:
    unlinked = [spec.key.to_user_string() for asset in definitions.defs.assets for spec in asset.specs
                if "dagster/code_references" not in spec.metadata]
    assert unlinked == []
