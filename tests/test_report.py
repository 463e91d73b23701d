"""The HTML report opens with the verdict: a summary of the findings (check, status, key figure,
what was found, samples, hint; failed first, root causes before what they cause, skips last with
their reason; plots of failed / warned checks inline) above pytest-html's results table, whose
rows show a finding's message instead of the traceback of its assert. Built on the controller,
so the same under pytest-xdist.

The example of examples/incident runs as `python -m harness check --html` three times at once
(subprocesses; tests/incident_runs.py): the reported configuration (fails), the same with `-n 2`
(a subset of its checks: a root cause, a failure it causes, a pass, a skip) and the fixed one
(passes). The rendering itself is also tested on finding dicts directly.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.findings import Finding
from harness.report import HtmlSummary, order_findings, render_summary, replace_log
from tests.incident_runs import incident_runs

NOT_A_FINDING = ("AssertionError", "Traceback", "assert False", "where False")


# ----------------------------------------------------------------------------- parsing the report


class ReportParser(HTMLParser):
    """The summary's rows (class, cell texts), the position of the summary and of pytest-html's
    results table in the source, the summary's images, and pytest-html's JSON data blob."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[dict] = []
        self.banner = ""
        self.images: list[str] = []
        self.summary_at = self.results_at = None
        self.blob = None
        self._in_summary = self._in_banner = 0
        self._row = self._cell = None
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        pos = self.getpos()
        if a.get("id") == "harness-summary":
            self.summary_at, self._in_summary = pos, 1
        elif a.get("id") == "results-table":
            self.results_at = pos
        if "data-jsonblob" in a:
            self.blob = json.loads(a["data-jsonblob"])
        if not self._in_summary:
            return
        self._stack.append(tag)
        if tag == "div" and "verdict" in (a.get("class") or "").split():
            self._in_banner = len(self._stack)
        if tag == "tr" and self._in_table():
            self._row = {"class": a.get("class", ""), "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def _in_table(self) -> bool:
        return "table" in self._stack

    def handle_endtag(self, tag):
        if not self._in_summary:
            return
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["cells"] and self._row["class"]:  # not the header row
                self.rows.append(self._row)
            self._row = None
        if self._stack:
            if self._in_banner and len(self._stack) == self._in_banner:
                self._in_banner = 0
            self._stack.pop()
        if tag == "section":
            self._in_summary = 0

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_banner:
            self.banner += data


def parse(path: Path) -> ReportParser:
    p = ReportParser()
    p.feed(path.read_text(encoding="utf-8"))
    assert p.summary_at is not None, f"{path}: no harness summary"
    assert p.results_at is not None and p.blob is not None, f"{path}: not a pytest-html report"
    return p


def row(report: ReportParser, check: str) -> dict:
    """A summary row as {check, status, key, found, samples, hint}."""
    for r in report.rows:
        if r["cells"][0] == check:
            return dict(zip(("check", "status", "key", "found", "samples", "hint"), r["cells"]), cls=r["class"])
    raise AssertionError(f"no summary row for {check}: {[r['cells'][0] for r in report.rows]}")


def statuses(report: ReportParser) -> list[str]:
    return [r["cells"][1] for r in report.rows]


def logs(report: ReportParser) -> dict[str, str]:
    """pytest-html's row log of each test, by the check in its id: test_check[batch_size-1] -> batch_size-1."""
    out = {}
    for nodeid, entries in report.blob["tests"].items():
        key = nodeid.rsplit("[", 1)[-1].rstrip("]")
        out[key] = "\n".join(e.get("log", "") for e in entries)
    return out


# ----------------------------------------------------------------------------- the three runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """failing (harness.toml), xdist (the same with -n 2, a subset) and passing (fixed.toml): the
    runs of tests/incident_runs.py, shared with tests/test_example_incident.py."""
    results = {}
    for name, run in (("failing", "broken"), ("xdist", "xdist"), ("passing", "fixed")):
        r = incident_runs(tmp_path_factory)[run]
        assert r["html"] is not None and r["findings"], f"{name}: exit {r['rc']}\n{r['out'][-3000:]}"
        results[name] = {**r, "report": parse(r["html"])}
    return results


def _check_failing(r: dict, all_checks: bool) -> None:
    assert r["rc"] == 1, r["out"][-3000:]
    rep, findings = r["report"], r["findings"]
    # the summary first, then pytest-html's results table
    assert rep.summary_at < rep.results_at
    assert "FAILED" in rep.banner and "model_input" in rep.banner, rep.banner
    # failed first, then warned, passed, skipped last
    order = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
    seen = [order[s.lower()] for s in statuses(rep)]
    assert seen == sorted(seen), statuses(rep)
    assert len(rep.rows) == len(findings)
    # model_input, the root cause, is the first row, with its samples and hint
    mi = findings["model_input"]
    first = row(rep, "model_input")
    assert rep.rows[0]["cells"][0] == "model_input" and first["status"] == "fail", rep.rows[0]
    assert mi["samples"] and all(s in first["samples"] for s in mi["samples"][:6]), first["samples"]
    assert f"({len(mi['samples'])})" in first["samples"]
    assert first["hint"] == mi["hint"] and "floor every std" in first["hint"]
    assert "(x - mean) / std with std = 0" in first["found"] and first["key"] == mi["values"]["key"]
    # the failures it causes follow it and say so (when the findings carry caused_by)
    failed = [f for f in findings.values() if f["status"] == "fail"]
    caused = [f for f in failed if f["values"].get("caused_by")]
    rows_caused = [("caused" in r["class"].split()) for r in rep.rows if r["cells"][1] == "fail"]
    assert rows_caused == sorted(rows_caused), rows_caused  # roots before the failures they cause
    for f in caused:
        assert f"caused by {f['values']['caused_by']}" in row(rep, f["check"])["found"]
    if all_checks:
        assert "forward" in findings and findings["forward"]["status"] == "fail"
    # a skipped check is listed with its reason
    skip = row(rep, "clean_features")
    assert skip["status"] == "skip" and "no corpus to scan" in skip["found"]
    # the plots of failed / warned checks are inline images
    plotted = [f for f in findings.values() if f["status"] in ("fail", "warn") and f["plots"]]
    assert len([i for i in rep.images if i.startswith("data:image/png;base64,")]) >= len(plotted)
    # the results table's rows show the finding's message, not the traceback of the assert
    log = logs(rep)
    assert log["model_input"].startswith("[FAIL] model_input: model input holds"), log["model_input"][:500]
    assert f"  hint: {mi['hint']}" in log["model_input"]
    for key, text in log.items():
        assert not any(w in text for w in NOT_A_FINDING), f"{key}: {text[:1500]}"
    assert log["clean_features"].startswith("[SKIP] clean_features: no corpus to scan")
    # and the terminal's summary line names the finding, not an AssertionError
    assert "test_check[model_input] - [FAIL]" in r["out"] and "AssertionError" not in r["out"], r["out"][-3000:]


def test_failing_report_opens_with_the_root_cause(runs):
    _check_failing(runs["failing"], all_checks=True)


def test_failing_report_under_xdist(runs):
    _check_failing(runs["xdist"], all_checks=False)
    # the same rows, in the same order, as without xdist
    serial = [r["cells"][0] for r in runs["failing"]["report"].rows if r["cells"][0] in runs["xdist"]["findings"]]
    assert [r["cells"][0] for r in runs["xdist"]["report"].rows] == serial


def test_passing_report(runs):
    r = runs["passing"]
    assert r["rc"] == 0, r["out"][-3000:]
    rep, findings = r["report"], r["findings"]
    assert rep.summary_at < rep.results_at
    assert "PASSED" in rep.banner and "FAILED" not in rep.banner, rep.banner
    assert "fail" not in statuses(rep) and len(rep.rows) == len(findings)
    order = {"warn": 0, "pass": 1, "skip": 2}
    seen = [order[s] for s in statuses(rep)]
    assert seen == sorted(seen), statuses(rep)
    for f in findings.values():
        if f["status"] == "warn":
            assert row(rep, f["check"])["hint"] == f["hint"]
            assert f["check"] in rep.banner
    log = logs(rep)
    assert log["model_input"].startswith("[") and "model_input:" in log["model_input"].splitlines()[0]
    assert not any(w in text for text in log.values() for w in NOT_A_FINDING)


# ----------------------------------------------------------------------------- rendering, without a run


def _f(check, status, summary="s", **kw) -> dict:
    return Finding(check=check, status=status, summary=summary, **kw).to_json()


def _rows(page: str) -> list[list[str]]:
    p = ReportParser()
    p.feed(page + '<table id="results-table"></table><div data-jsonblob="{}"></div>')
    return [r["cells"] for r in p.rows]


def test_order_without_caused_by_is_the_suites_table_order():
    """Without caused_by (or before the causes are linked), failed checks follow the suite's
    table order, whatever order xdist delivered them in; numbered parameters in numeric order."""
    found = [_f("smoke", "pass"), _f("batch_size[4]", "fail"), _f("clean_features", "skip", "no corpus"),
             _f("labels", "warn"), _f("batch_size[2]", "fail"), _f("forward", "fail"), _f("model_input", "fail")]
    assert [f["check"] for f in order_findings(found)] == [
        "model_input", "forward", "batch_size[2]", "batch_size[4]", "labels", "smoke", "clean_features"]
    page = render_summary(found)
    assert [r[0] for r in _rows(page)][:2] == ["model_input", "forward"] and "caused by" not in page
    assert "Failed:" in page and "FAILED" in page


def test_caused_by_rows_follow_their_root_and_say_so():
    root = _f("model_input", "fail", "NaN in the input", samples=["a", "b"], hint="floor the std")
    down = _f("forward", "fail", "caused by model_input: forward not finite", hint="generic")
    down["values"]["caused_by"] = "model_input"
    rows = _rows(render_summary([down, root, _f("contract", "pass")]))
    assert [r[0] for r in rows] == ["model_input", "forward", "contract"]
    assert rows[1][3] == "caused by model_input forward not finite"  # the prefix is not repeated
    assert rows[0][4] == "a, b (2)" and rows[0][5] == "floor the std"
    assert "Root cause: <b>model_input</b> &mdash; the other 1 failure(s) are caused by it" in render_summary([down, root])


def test_harness_errors_without_a_finding_are_the_verdict():
    """A harness test that errors before recording a finding (e.g. the context cannot be built)."""
    page = render_summary([], errors=[("suite.py::test_check[contract]", "setup", "FileNotFoundError: no manifest")])
    assert "FAILED" in page and "FileNotFoundError: no manifest" in page
    assert render_summary([], errors=[]) == ""  # a run without harness tests gets no summary


class _Report:
    def __init__(self, outcome, longrepr, findings):
        self.outcome, self.longreprtext, self.when = outcome, longrepr, "call"
        self.skipped, self.failed = outcome == "skipped", outcome == "failed"
        self.user_properties = [("finding", json.dumps(f.to_json())) for f in findings]


def test_row_log_is_the_message_and_a_real_error_keeps_its_traceback():
    f = Finding(check="forward", status="fail", summary="not finite", hint="fix the input")
    rep = _Report("failed", f.message(), [f])  # the longrepr the plugin sets on the finding's assert
    data = [f.message() + "\n", "----- Captured stdout call -----\nhello"]
    replace_log(rep, data)
    assert data[0] == f.message().replace("'", "&#x27;") + "\n" and len(data) == 2 and "hello" in data[1]
    tb = "Traceback (most recent call last):\nRuntimeError: boom"
    data = [tb + "\n"]
    replace_log(_Report("failed", tb, [f]), data)
    assert data[0].startswith("[FAIL] forward") and "RuntimeError: boom" in data[1]
    skipped = Finding(check="normalization", status="skip", summary="the dataset is the user's")
    data = ["(&#x27;suite.py&#x27;, 33, &#x27;Skipped: x&#x27;)\n"]
    replace_log(_Report("skipped", "('suite.py', 33, 'Skipped: x')", [skipped]), data)
    assert data == ["[SKIP] normalization: the dataset is the user&#x27;s\n"]


def test_summary_plugin_collects_plots_and_errors():
    s = HtmlSummary(lambda: [_f("gradients", "fail", "no gradient", plots={"norms": b"png"})])

    class R:
        when, failed, nodeid, longrepr, user_properties = "call", False, "t", None, []
        harness_plots = [["gradients", "norms", "cG5n"]]

    s.pytest_runtest_logreport(R())
    prefix = []
    s.pytest_html_results_summary(prefix, [], [], None)
    assert len(prefix) == 1 and "data:image/png;base64,cG5n" in prefix[0] and "gradients</b>: norms" in prefix[0]
