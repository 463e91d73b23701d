"""pytest plugin: wires the harness checks into options, markers, fixtures and reports.

Installed with the project it loads through its `pytest11` entry point, in any directory. It
holds no check logic: `cslr_check` parametrizes a test over the table of harness/suite.py
(harness/pytest_suite.py is that test), and any test can hand a Finding to `record_finding`,
which puts it in the HTML report (tables, plots), the JSON diagnostics (--diag-json) and the
closing table of the terminal summary. In-process runs (the gate, `python -m harness`) pass a
`ConfiguredRun` plugin object: the TrainConfig to check, and the Finding objects they get back.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.findings import Finding, format_findings

FINDINGS = pytest.StashKey[list]()
PRESET = pytest.StashKey[object]()
RUN = pytest.StashKey[object]()  # the ConfiguredRun of an in-process run
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
    group.addoption("--only-checks", default=None, metavar="NAMES",
                    help="comma-separated harness checks to run (names of harness/suite.py, e.g. contract,model_input,padding)")


PATH_OPTIONS = ("data_dir", "config", "replay", "diag_json")  # dests of this plugin's options that take a path


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, args, parser):
    """pytest chooses its rootdir and ini file before any plugin has added its options, so the
    value of `--data-dir PATH` (written with a space) is taken there for a test path: the rootdir
    becomes the corpus, the project's pytest.ini is not read and .pytest_cache would land in the
    user's data. Now that the options are known, choose again from the real test paths."""
    ns = early_config.known_args_namespace
    values = [getattr(ns, d, None) for d in PATH_OPTIONS]
    if ns.inifilename or ns.rootdir or not any(values):
        return
    from _pytest.config.findpaths import determine_setup

    rootpath, inipath, inicfg, ignored = determine_setup(
        inifile=None, override_ini=ns.override_ini, args=ns.file_or_dir, rootdir_cmd_arg=None,
        invocation_dir=early_config.invocation_params.dir,
    )
    if (rootpath, inipath) == (early_config.rootpath, early_config.inipath):
        return
    try:  # pytest's own attributes (pinned pytest); should they move, the run goes on with pytest's choice
        early_config._rootpath, early_config._inipath, early_config._inicfg = rootpath, inipath, inicfg
        early_config._ignored_config_files = ignored
        early_config._inicache.clear()
        early_config._parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    except AttributeError:
        return
    # the ini's addopts (pytest applied those of no file) and its conftest boundary
    args[:] = early_config._validate_args(early_config.getini("addopts"), "via addopts config") + args
    ns.confcutdir = str(inipath.parent if inipath is not None else rootpath)


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


SUITE = Path(__file__).resolve().with_name("pytest_suite.py")
# fixtures of this plugin that a test wiring the harness itself uses (harness.pytest_suite.test_check among them)
OWN_FIXTURES = ("cslr_check", "train_config", "record_finding")


def _wants_suite(config, items) -> bool:
    """Whether to run the harness's checks (harness/pytest_suite.py) in this session without a
    test file importing them: a configuration or corpus is given (--config / --data-dir), no path
    was named on the command line (then that is what runs), and no collected test uses this
    plugin's fixtures (a project that wires the harness itself runs what it wires)."""
    if not (config.getoption("--config") or config.getoption("--data-dir")):
        return False
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return False
    return not any(name in OWN_FIXTURES for item in items for name in getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)  # the suite's tests are added before -m / -k deselect
def pytest_collection_modifyitems(session, config, items):
    if _wants_suite(config, items):
        items.extend(session.genitems(pytest.Module.from_parent(session, path=SUITE, nodeid="harness/pytest_suite.py")))
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="needs CUDA: run with --gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    if "cslr_check" not in metafunc.fixturenames:
        return
    from harness.suite import expand

    cfg = _load_config(metafunc.config)
    configured_only = metafunc.config.getoption("--configured-only")
    pairs = expand(cfg, configured_only=configured_only)
    only = metafunc.config.getoption("--only-checks")
    if only:
        from harness.api import select_checks

        try:
            pairs = select_checks(cfg, [n.strip() for n in only.split(",") if n.strip()], configured_only, argument="--only-checks")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    params = []
    for check, param in pairs:
        marks = [getattr(pytest.mark, check.marker)] + ([pytest.mark.slow] if check.marker == "overfit" else [])
        params.append(pytest.param((check, param), marks=marks, id=check.name if param is None else f"{check.name}-{param}"))
    metafunc.parametrize("cslr_check", params)


class ConfiguredRun:
    """Plugin object for an in-process run: it supplies the TrainConfig to check (no file is
    written and re-read) and collects the run's findings as Finding objects."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.findings: list[Finding] = []
        self.context = None  # the run's HarnessContext, once a check has built it (its scan, for the data profile)

    def pytest_configure(self, config):
        config.stash[PRESET] = self.cfg
        config.stash[RUN] = self

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.findings += [Finding.from_json(json.loads(v)) for k, v in report.user_properties if k == "finding"]


# ----------------------------------------------------------------------------- fixtures


def _load_config(config):
    """The configuration under test: a ConfiguredRun's, else --config with --data-dir over it."""
    if PRESET in config.stash:
        return config.stash[PRESET]
    from model.config import load_config

    try:
        return load_config(config.getoption("--config"), data_dir=config.getoption("--data-dir"))
    except (OSError, ValueError, TypeError) as exc:
        raise pytest.UsageError(f"--config {config.getoption('--config')}: {exc}") from None


@pytest.fixture(scope="session")
def train_config(pytestconfig):
    """The training configuration under test (--config file, --data-dir override)."""
    return _load_config(pytestconfig)


@pytest.fixture(scope="session")
def device(train_config, pytestconfig):
    from harness.context import harness_device

    return harness_device(train_config, gpu=pytestconfig.getoption("--gpu"))


@pytest.fixture(scope="session")
def harness(train_config, device, pytestconfig):
    """HarnessContext: data (corpus or the user's dataset), scan, vocabulary, model, transform."""
    from harness.context import HarnessContext

    ctx = HarnessContext(train_config, device, workers=pytestconfig.getoption("--scan-workers"))
    run = pytestconfig.stash.get(RUN, None)
    if run is not None:
        run.context = ctx
    return ctx


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
    from harness.report import html_table

    return html_table(title, table)


def _html_wanted(config) -> bool:
    return bool(getattr(config.option, "htmlpath", None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that recorded findings: they go into `report.user_properties` ("finding", JSON),
    which xdist carries to the controller; a failure on the finding's own assert reports the
    finding's message instead of the assert's traceback (terminal, JUnit, HTML); with --html the
    row gets the findings' tables and plots, and the report the plots its summary shows."""
    outcome = yield
    report = outcome.get_result()
    if "record_finding" not in getattr(item, "fixturenames", ()):
        return
    from harness import report as html_report

    setattr(report, html_report.HARNESS_ATTR, True)
    findings = item.stash.get(ITEM_FINDINGS, [])
    if report.when != "call" or not findings:
        return
    for f in findings:
        report.user_properties.append(("finding", json.dumps(f.to_json())))
    if report.failed and html_report.failed_on_finding(call, findings):
        report.longrepr = html_report.verdict_text(findings)
    if not _html_wanted(item.config):
        return
    try:
        from pytest_html import extras as html_extras
    except ImportError:  # reports without pytest-html still get the JSON
        return
    setattr(report, html_report.PLOTS_ATTR, html_report.plot_records(findings))
    report.extras = getattr(report, "extras", []) + html_report.row_extras(findings, html_extras)


def pytest_sessionstart(session):
    """The HTML report's summary (harness/report.py) is written by the controller of an --html run."""
    config = session.config
    if hasattr(config, "workerinput") or not _html_wanted(config) or not config.pluginmanager.hasplugin("html"):
        return
    if config.pluginmanager.get_plugin("cslr-html-summary") is None:
        from harness.report import HtmlSummary

        config.pluginmanager.register(HtmlSummary(lambda: config.stash.get(FINDINGS, [])), "cslr-html-summary")


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

    def link(self) -> list:
        """Name the root causes (harness/causes.py) once every finding is in: root causes first."""
        from harness.causes import link_causes

        linked = link_causes([Finding.from_json(d) for d in self.findings])
        self.config.stash[FINDINGS] = [f.to_json() for f in linked]
        return self.findings

    @pytest.hookimpl(tryfirst=True)  # before pytest-html writes its report from the same findings
    def pytest_sessionfinish(self, session, exitstatus):
        self.link()
        path = self.config.getoption("--diag-json")
        if not path:
            return
        from data.corpus import atomic_write_text

        atomic_write_text(path, json.dumps({"findings": self.findings, "exitstatus": int(exitstatus)}, indent=1, default=str))

    def pytest_terminal_summary(self, terminalreporter):
        if not self.findings:
            return
        terminalreporter.section("CSLR harness findings")
        for line in format_findings(self.findings).splitlines():
            terminalreporter.write_line(line, red=line.startswith("FAIL"))
