"""Every public name is importable, and every module's __all__ is accurate (STYLE.md rule 1)."""

import importlib

import pytest

import jaxcontext

MODULES = [
    "jaxcontext.operators",
    "jaxcontext.kernels",
    "jaxcontext.contexts",
    "jaxcontext.datasets",
    "jaxcontext.spectrum",
    "jaxcontext.linalg",
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


def test_version():
    assert isinstance(jaxcontext.__version__, str)
