"""Every public name is importable, and every module's __all__ is accurate (STYLE.md rule 1)."""

import importlib
import subprocess
import sys

import pytest

import jaxcontext

MODULES = [
    "jaxcontext.operators",
    "jaxcontext.kernels",
    "jaxcontext.contexts",
    "jaxcontext.datasets",
    "jaxcontext.spectrum",
    "jaxcontext.linalg",
    "jaxcontext.models",
    "jaxcontext.objectives",
    "jaxcontext.training",
    "jaxcontext.evaluation",
    "jaxcontext.bridge",
]


def test_top_level_names_exist():
    for name in jaxcontext.__all__:
        assert getattr(jaxcontext, name) is not None, name


@pytest.mark.parametrize("module", MODULES)
def test_module_all_names_exist(module):
    mod = importlib.import_module(module)
    assert mod.__all__, module
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_every_module_is_reachable_from_the_package():
    """``import jaxcontext as jc`` alone makes each ``jc.<module>`` usable (fresh interpreter)."""
    attrs = [m.split(".")[1] for m in MODULES]
    code = "import jaxcontext as jc\n" + "".join(f"assert jc.{a}.__all__\n" for a in attrs)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_solver_at_top_level():
    from jaxcontext import linalg

    assert jaxcontext.svds is linalg.svds
    assert jaxcontext.Spectrum is linalg.Spectrum
    assert {"svds", "Spectrum", "linalg"} <= set(jaxcontext.__all__)


def test_version():
    assert isinstance(jaxcontext.__version__, str)
