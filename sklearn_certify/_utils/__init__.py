"""Private helpers shared across the package: validation, targets, scores, seeds,
devices, lazy imports and the content-keyed caches. A leaf: nothing here imports
the rest of sklearn_certify (the version constant aside)."""
