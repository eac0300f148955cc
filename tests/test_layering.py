"""The certificate math loads numpy and scipy only (no scikit-learn, pandas or torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sklearn", "pandas", "torch", "skorch", "matplotlib", "joblib")


@pytest.mark.parametrize("module", ["sklearn_certify.certificates", "sklearn_certify.bounds"])
def test_certificate_math_loads_numpy_and_scipy_only(module):
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", f"{module} loads {out.stdout.strip()}"


def test_the_check_sees_a_heavy_import():
    code = ("import sys, sklearn_certify.results; "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
