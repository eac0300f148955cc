"""Docstring text shared by several estimators, written once (imbalanced-learn's
``Substitution`` pattern)."""

from __future__ import annotations

__all__ = ["CERTIFY_K_AND_LABEL", "CERTIFY_MULTICLASS_NOTE", "Substitution"]

#: ``certify``'s ``k`` and ``label`` options, the same for the three estimators.
CERTIFY_K_AND_LABEL = """
        k : int, optional
            Overrides the ``k`` parameter for this call.
        label : str, optional
            Name of the result in tables and legends.
"""

#: ``certify``'s note on 1-D multi-class targets, the same for the three estimators.
CERTIFY_MULTICLASS_NOTE = """
        For 1-D multi-class targets ``predict`` returns the top-1 label, while
        ``certify`` certifies the top-``k`` set: use ``k=1`` (as an estimator parameter
        or here) for the certificate of ``predict``'s label.
"""


class Substitution:
    """Decorator filling the ``{name}`` placeholders of a docstring.

    Only the given names are replaced, so the other braces of a numpydoc docstring
    (``{"a", "b"}`` choices) stay as they are.

    Parameters
    ----------
    **texts : str
        Placeholder name -> text, indented as it is to appear.

    Examples
    --------
    >>> @Substitution(who="world")
    ... def hello():
    ...     '''Hello, {who}; {"a", "b"} stays.'''
    >>> hello.__doc__
    'Hello, world; {"a", "b"} stays.'
    """

    def __init__(self, **texts: str) -> None:
        self.texts = texts

    def __call__(self, obj):
        doc = obj.__doc__
        for name, text in self.texts.items():
            placeholder = "{" + name + "}"
            if placeholder not in doc:
                raise ValueError(f"{obj.__qualname__}'s docstring has no {placeholder}.")
            # the placeholder line gives the first line its indent; the others keep theirs
            doc = doc.replace(placeholder, text.strip("\n").lstrip())
        obj.__doc__ = doc
        return obj
