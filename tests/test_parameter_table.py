"""The docs' parameter table (docs/model_selection.md) is generated from
``sklearn_certify._params`` by docs/sphinxext/parameter_table.py; it names every
parameter of every estimator, with the role the caches use."""

from pathlib import Path

import pytest

from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify._params import PARAMETER_ROLES, parameter_role

from ._helpers import docs_extension

DOCS = Path(__file__).resolve().parents[1] / "docs"
ESTIMATORS = (SmoothedMultiLabelClassifier, BaggingCertifiedClassifier, DPACertifiedClassifier)


@pytest.fixture(scope="module")
def table():
    return docs_extension("parameter_table")


def test_the_table_has_a_column_per_estimator(table):
    assert list(PARAMETER_ROLES) == [cls.__name__ for cls in ESTIMATORS]
    header = table.markdown_table()[0]
    assert header == (
        "| parameter | `SmoothedMultiLabelClassifier` | "
        "`BaggingCertifiedClassifier` | `DPACertifiedClassifier` |"
    )


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_the_table_names_every_parameter_once_with_its_role(table, cls):
    column = list(PARAMETER_ROLES).index(cls.__name__)
    rows = table.table_rows()
    words = {
        "training": "refit",
        "free": "free",
        "counts": "resample" if cls is SmoothedMultiLabelClassifier else "recount votes",
    }
    for name in cls().get_params(deep=False):
        found = [cells for names, cells in rows if name in names]
        assert len(found) == 1, name
        role = parameter_role(cls.__name__, name)
        assert found[0][column].split(" (")[0].split(" and ")[0] == words[role], name
    # and a parameter the estimator lacks is a dash in its column: no stale entries
    params = set(cls().get_params(deep=False))
    for names, cells in rows:
        assert (cells[column] == "--") == (not params & set(names)), names


def test_a_parameter_an_estimator_lacks_is_a_dash(table):
    assert table.cell("DPACertifiedClassifier", "alpha") == "--"
    assert table.cell("BaggingCertifiedClassifier", "n_draws") == "--"
    assert table.cell("SmoothedMultiLabelClassifier", "k_base") == "--"


def test_the_markdown_has_one_line_per_row(table):
    lines = table.markdown_table()
    rows = table.table_rows()
    assert len(lines) == 2 + len(rows)
    for line, (names, cells) in zip(lines[2:], rows):
        assert line.count("|") == 2 + len(PARAMETER_ROLES)
        assert line.startswith("| " + ", ".join(f"`{n}`" for n in names) + " | ")
        assert line.endswith(" | ".join(cells) + " |")


def test_the_page_uses_the_generated_table_and_holds_no_copy():
    page = (DOCS / "model_selection.md").read_text()
    assert page.count("```{parameter-table}") == 1
    assert not [line for line in page.splitlines() if line.startswith("| `")]
    assert "parameter_table" in (DOCS / "conf.py").read_text()
