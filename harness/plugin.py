"""pytest plugin: wires the harness checks into options, markers, fixtures and reports.

It holds no check logic: tests call the pure functions of harness/*_checks.py and hand their
Finding to `record_finding`, which puts it in the HTML report (tables, plots), the JSON
diagnostics (--diag-json) and the closing table of the terminal summary.
"""
from __future__ import annotations

import base64
import html
import json

import pytest

from data.normalize import METHODS
from harness.findings import FAIL, Finding

FINDINGS = pytest.StashKey[list]()
THREADS = pytest.StashKey[int]()
ITEM_FINDINGS = pytest.StashKey[list]()
MARKERS = {
    "compat": "compatibility checks of corpus + configuration against the model (harness)",
    "overfit": "overfit a tiny fixed subset to 0% WER (harness)",
    "smoke": "a few optimisation steps with the exact training configuration (harness)",
    "gpu": "needs CUDA; run with --gpu",
    "slow": "takes more than a few seconds",
    "real_data": "reads the third-party data in ../shared/data",
}
BATCH_SIZES = (1, 2, 4)


def pytest_addoption(parser):
    group = parser.getgroup("cslr", "CSLR compatibility harness")
    group.addoption("--data-dir", default=None, help="corpus directory to check (default: the embedded demo corpus)")
    group.addoption("--config", default=None, help="training configuration file (the one train.py --config reads)")
    group.addoption("--gpu", action="store_true", default=False, help="run on CUDA; stops at once if CUDA is absent")
    group.addoption("--diag-json", default=None, help="write every finding as JSON to this path")
    group.addoption(
        "--configured-only", action="store_true", default=False,
        help="check only the configured normalization method (the train.py gate uses this)",
    )
    group.addoption("--replay", default=None, help="nonfinite_batch.pt saved by train.py: replay it as a failing check")
    group.addoption("--scan-workers", type=int, default=0, help="worker processes for the streaming corpus scan")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(FindingsReporter(config), "cslr-findings-reporter")
    if not config.getoption("--gpu"):
        # the checks run small batches: one torch thread avoids oversubscription (xdist workers,
        # other jobs), which slows CPU steps ~5-10x on a 2-core machine; restored on exit
        # because train.py runs the gate in-process before training
        import torch

        config.stash[THREADS] = torch.get_num_threads()
        torch.set_num_threads(1)
    if config.getoption("--gpu"):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu given but CUDA is not available on this machine (torch.cuda.is_available() is False); drop --gpu to run on CPU")


def pytest_unconfigure(config):
    if THREADS in config.stash:
        import torch

        torch.set_num_threads(config.stash[THREADS])


def pytest_collection_modifyitems(config, items):
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="needs CUDA: run with --gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    if "norm_method" in metafunc.fixturenames:
        methods = METHODS
        if metafunc.config.getoption("--configured-only"):
            methods = (_load_config(metafunc.config).normalize,)
        metafunc.parametrize("norm_method", methods)
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", BATCH_SIZES)


# ----------------------------------------------------------------------------- fixtures


def _load_config(config):
    from model.config import load_config

    return load_config(config.getoption("--config"), data_dir=config.getoption("--data-dir"))


@pytest.fixture(scope="session")
def train_config(pytestconfig):
    """The training configuration under test (--config file, --data-dir override)."""
    return _load_config(pytestconfig)


@pytest.fixture(scope="session")
def device(pytestconfig):
    import torch

    return torch.device("cuda" if pytestconfig.getoption("--gpu") else "cpu")


@pytest.fixture(scope="session")
def harness(train_config, device, pytestconfig):
    """HarnessContext: corpus, scan, vocabulary, datasets per method, model factory."""
    from harness.context import HarnessContext

    return HarnessContext(train_config, device, workers=pytestconfig.getoption("--scan-workers"))


@pytest.fixture(scope="session")
def thresholds(harness):
    return harness.thresholds


@pytest.fixture
def record_finding(request):
    """Call with a Finding: it goes to the report, the JSON diagnostics and the summary table."""

    def record(finding: Finding) -> Finding:
        request.node.stash.setdefault(ITEM_FINDINGS, []).append(finding)
        return finding

    return record


# ----------------------------------------------------------------------------- reports


def _html_table(title: str, table: dict) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table["columns"])
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in table["rows"][:200])
    more = f"<p>... {len(table['rows']) - 200} more rows</p>" if len(table["rows"]) > 200 else ""
    return f"<h4>{html.escape(title)}</h4><table border='1' cellpadding='3'><tr>{head}</tr>{rows}</table>{more}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    findings = item.stash.get(ITEM_FINDINGS, [])
    if report.when != "call" or not findings:
        return
    extras = getattr(report, "extras", [])
    try:
        from pytest_html import extras as html_extras
    except ImportError:  # reports without pytest-html still get the JSON
        html_extras = None
    for f in findings:
        report.user_properties.append(("finding", json.dumps(f.to_json())))
        if html_extras is None:
            continue
        body = f"<pre>{html.escape(f.message())}</pre>" + "".join(_html_table(k, v) for k, v in f.tables.items())
        extras.append(html_extras.html(f"<div class='finding'>{body}</div>"))
        for title, png in f.plots.items():
            extras.append(html_extras.png(base64.b64encode(png).decode(), name=title))
    report.extras = extras


class FindingsReporter:
    """Controller-side collector: gathers findings from its own and xdist workers' reports,
    writes --diag-json and prints the closing table. Workers never write reports."""

    def __init__(self, config):
        self.config = config
        config.stash[FINDINGS] = []

    @property
    def findings(self) -> list:
        return self.config.stash[FINDINGS]

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == "finding":
                self.findings.append(json.loads(value))

    def pytest_sessionfinish(self, session, exitstatus):
        path = self.config.getoption("--diag-json")
        if not path:
            return
        from data.corpus import atomic_write_text

        atomic_write_text(path, json.dumps({"findings": self.findings, "exitstatus": int(exitstatus)}, indent=1, default=str))

    def pytest_terminal_summary(self, terminalreporter):
        if not self.findings:
            return
        tr = terminalreporter
        tr.section("CSLR harness findings")
        width = max(len(f["check"]) for f in self.findings)
        tr.write_line(f"{'check':<{width}}  status  key figure")
        for f in sorted(self.findings, key=lambda f: f["check"]):
            tr.write_line(f"{f['check']:<{width}}  {f['status']:<6}  {f['values'].get('key', '')}")
        for f in self.findings:
            if f["status"] == FAIL:
                tr.write_line(f"FAIL {f['check']}: {f['summary']}", red=True)
                if f["hint"]:
                    tr.write_line(f"     hint: {f['hint']}")
