"""docs/banks/: a page per registered dialect, current with its declaration, and the onboarding guide."""

from __future__ import annotations

import pytest

from banks import registry
from banks.dialect import Dialect
from tests.banks.docgen import DOCS, fresh_keys, mask, render
from tests.banks.support import keys_for
from tests.vectors.attacks.generate import Keys


@pytest.fixture(scope="module")
def throwaway() -> dict[str, Keys]:
    return fresh_keys()


@pytest.mark.parametrize("dialect", registry.DIALECTS.values(), ids=list(registry.DIALECTS))
def test_each_dialect_has_a_current_page(dialect: Dialect, throwaway: dict[str, Keys]) -> None:
    """docs/banks/<code>.md is what `python -m tests.banks.docgen` writes today (signature values aside)."""
    page = (DOCS / f"{dialect.code}.md").read_text(encoding="utf-8")
    fresh = render(dialect, keys_for(dialect, throwaway))
    assert mask(page, dialect) == mask(fresh, dialect), "regenerate with `python -m tests.banks.docgen`"
    if dialect.code != "standard":
        assert "Our model, not the bank's specification" in page


def test_the_onboarding_guide_covers_every_step() -> None:
    guide = (DOCS / "adding-a-bank.md").read_text(encoding="utf-8")
    for step in (
        "banks/declarations/",
        "DECLARATION_FILES",
        "tests/vectors/",
        "python -m tests.banks.regenerate",
        "tests/banks/test_conformance.py",
        "python -m tests.banks.docgen",
        "tgw init",
        "--bank",
        "tgw message validate",
        "tgw message sign",
        "tgw message verify",
        "package_data",
    ):
        assert step in guide, step
