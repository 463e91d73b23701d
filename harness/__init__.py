"""The diagnostic harness (harness/suite.py is the table of checks, harness/__main__.py the command).

Importing it installs one import hook, `ProjectPackages`: a top-level `import model` or
`import data` written in this project's own packages (harness/, model/, data/) finds this
project's package, even when a directory earlier on sys.path holds a module or directory of
the same name. That is the normal case for a user: `python -m harness` puts the working
directory first on sys.path, and a user project often has its own model.py, data.py or a
`data/` folder. The same import written anywhere else (the user's code, another project's
tests under the autoloaded pytest plugin) is left to Python's own lookup, so importing the
harness changes nothing for code that is not this project's. A user's model.py named in the
configuration (`model = "model:make_model"`) is loaded from its file by
`model.components.import_object`.

The Python API is exported lazily (this module is imported by the pytest plugin in every pytest
run, so it imports nothing heavy itself): `from harness import check` (harness/api.py: the checks
on a configuration or on Python objects, a Report back) and `from harness import guard`
(harness/guard.py: a watch on the user's own training loop for non-finite steps).
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.machinery import PathFinder

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CLAIMED = frozenset({"data", "model"})  # the project's top-level packages its modules import
_OWN_DIRS = tuple(os.path.realpath(os.path.join(PROJECT_ROOT, p)) + os.sep for p in ("harness", "model", "data"))
_IMPORTLIB_DIR = os.path.dirname(os.path.realpath(importlib.__file__)) + os.sep


def _importing_file() -> str | None:
    """The source file of the frame whose import statement (or importlib.import_module call)
    is being resolved, past the frames of the import system itself."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith("<frozen importlib") or os.path.realpath(name).startswith(_IMPORTLIB_DIR)):
            return name
        frame = frame.f_back
    return None


class ProjectPackages:
    """Meta path finder: `model` and `data` imported by this project's own modules are this
    project's packages; every other import is left to the finders after it."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in _CLAIMED or path is not None:
            return None
        source = _importing_file()
        if source is None or not os.path.realpath(source).startswith(_OWN_DIRS):
            return None
        return PathFinder.find_spec(fullname, [PROJECT_ROOT])


# once per process, also when this module is imported again (importlib.reload, a test that clears sys.modules)
sys.meta_path[:] = [f for f in sys.meta_path if not (getattr(f, "__module__", None) == __name__ and getattr(f, "__qualname__", None) == "ProjectPackages")]
sys.meta_path.insert(0, ProjectPackages)


# name -> "module:attribute", or "module" for the module itself (harness.guard is callable: guard(model, ...) builds a Guard)
_LAZY = {"check": "harness.api:check", "Report": "harness.api:Report", "HarnessFailure": "harness.api:HarnessFailure",
         "guard": "harness.guard", "Guard": "harness.guard:Guard", "NonFiniteStep": "harness.guard:NonFiniteStep"}
__all__ = sorted(_LAZY)


def __getattr__(name):
    """`from harness import check` / `guard`: imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj
