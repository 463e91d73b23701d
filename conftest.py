# The harness plugin (harness/plugin.py) supplies the options (--data-dir, --config, --gpu,
# --diag-json), markers, fixtures and report hooks for every test in this repository.
#
# Normally it is loaded through its entry point (`pip install -r requirements.txt -e .`), named
# "harness.plugin" after the module. Listing it here as well keeps a checkout that was not
# installed working (`--data-dir=PATH` then needs the "=" form: options of a conftest-loaded
# plugin are unknown while pytest pre-parses the command line). With the entry point installed
# this line is a no-op: pytest's import_plugin returns at once for a name already registered,
# so the plugin is never registered twice.
import os
import re

pytest_plugins = ["harness.plugin"]

# Under pytest-xdist (the README's `-n 2` on a 2-core machine) every core already has a worker:
# a command a test starts (train.py, `python -m harness check`, torchrun) gets one torch/OpenMP
# thread, as the workers do (the plugin's pytest_configure), instead of competing with the other
# worker for two. Set before anything imports torch; a variable the caller set is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_ignore_collect(collection_path, config):
    """`pytest -m compat` (or smoke, overfit: any expression no unmarked test satisfies) in this
    repository: a test module whose text names none of the expression's markers and does not
    import the harness's suite (whose parameters the plugin marks) holds no test it selects, so it
    is not imported: the checks are collected without importing the whole test suite."""
    expr = config.option.markexpr
    if not expr or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    try:
        from _pytest.mark.expression import Expression

        if Expression.compile(expr).evaluate(lambda name, **kwargs: False):
            return None  # e.g. "not slow": unmarked tests are selected
    except Exception:  # noqa: BLE001 - pytest's own parser reports a bad expression later
        return None
    names = (set(re.findall(r"[A-Za-z_]\w*", expr)) - {"and", "or", "not"}) | {"pytest_suite"}
    text = collection_path.read_text(encoding="utf-8", errors="ignore")
    return None if any(re.search(rf"\b{re.escape(n)}\b", text) for n in names) else True
