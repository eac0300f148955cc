"""The ``parameter-table`` directive: what each estimator parameter changes.

``docs/model_selection.md`` writes ``{parameter-table}`` in a directive fence; the
table is generated from :data:`sklearn_certify._params.PARAMETER_ROLES` (the roles that
also make the caches' keys) and :data:`sklearn_certify._params.ROLE_NOTES`, so the page
cannot drift from what the caches do. ``tests/test_memory.py`` checks that the table
names every parameter of every estimator.
"""

from __future__ import annotations

from sklearn_certify._params import PARAMETER_ROLES, ROLE_NOTES

#: The table's word for each role; an ensemble's counts are the votes of its models.
ROLE_WORDS = {"training": "refit", "counts": "recount votes", "free": "free"}
COUNTS_WORDS = {"SmoothedMultiLabelClassifier": "resample"}
#: Rows come in this order of the first role a parameter has in any estimator.
ROLE_ORDER = ("training", "counts", "free")
ABSENT = "--"


def cell(estimator: str, parameter: str) -> str:
    """The table's cell for ``parameter`` of ``estimator``: role word and note, or
    ``--`` when the estimator has no such parameter."""
    for role, names in PARAMETER_ROLES[estimator].items():
        if parameter in names:
            word = (
                COUNTS_WORDS.get(estimator, ROLE_WORDS[role])
                if role == "counts"
                else ROLE_WORDS[role]
            )
            note = ROLE_NOTES.get(estimator, {}).get(parameter)
            return f"{word} {note}" if note else word
    return ABSENT


def table_rows() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``(parameters, cells)`` per row, one cell per estimator of ``PARAMETER_ROLES``.

    Parameters whose cells are the same in every estimator share a row.
    """
    estimators = list(PARAMETER_ROLES)
    first_seen: dict[str, tuple[int, int]] = {}
    for estimator in estimators:
        for role, names in PARAMETER_ROLES[estimator].items():
            for name in names:
                rank = (ROLE_ORDER.index(role), len(first_seen))
                first_seen[name] = min(first_seen.get(name, rank), rank)
    rows: dict[tuple[str, ...], list[str]] = {}
    for name in sorted(first_seen, key=first_seen.__getitem__):
        cells = tuple(cell(estimator, name) for estimator in estimators)
        rows.setdefault(cells, []).append(name)
    return [(tuple(names), cells) for cells, names in rows.items()]


def markdown_table() -> list[str]:
    """The table as Markdown lines."""
    estimators = list(PARAMETER_ROLES)
    lines = [
        "| parameter | " + " | ".join(f"`{name}`" for name in estimators) + " |",
        "| --- " * (len(estimators) + 1) + "|",
    ]
    for names, cells in table_rows():
        lines.append(
            "| " + ", ".join(f"`{name}`" for name in names) + " | " + " | ".join(cells) + " |"
        )
    return lines


def _directive():
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class ParameterTable(SphinxDirective):
        """Insert :func:`markdown_table` (parsed as the page's Markdown)."""

        has_content = False

        def run(self):
            container = nodes.container()
            self.state.nested_parse(
                StringList(markdown_table(), source=self.env.docname),
                self.content_offset,
                container,
            )
            return container.children

    return ParameterTable


def setup(app):
    app.add_directive("parameter-table", _directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
