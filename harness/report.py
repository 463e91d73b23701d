"""The HTML report's first screen: the verdict and one table of the findings, above pytest-html's
list of tests.

The report opens with a banner (FAILED / PASSED, the counts, the root cause and what to do),
then a table of every check (check, status, key figure, what was found, samples, hint): failed
checks first, root causes before the failures they cause (`values["caused_by"]`, shown as
"caused by X"), then warnings, passes, and skipped checks with their reason; then the plots of
the failed and warned checks, inline. pytest-html's results table follows, where the row of a
test that recorded a finding shows the finding's message instead of the traceback of its assert.

Two halves: `row_extras` / `plot_records` / `verdict_text` run where the test ran (an xdist
worker, or the only process) and attach what the controller needs to the report; `HtmlSummary`
runs on the controller (registered by harness/plugin.py when --html is given), gathers it and
renders the page. The findings themselves come from the controller's FindingsReporter.
"""
from __future__ import annotations

import base64
import html
import re
from typing import Callable

from harness.findings import FAIL, PASS, SKIP, WARN, Finding
from harness.plots import png_of

GROUPS = (FAIL, WARN, PASS, SKIP)
PLOTS_ATTR = "harness_plots"  # report attribute: [[check, title, base64 PNG], ...] of failed / warned findings
HARNESS_ATTR = "harness_test"  # report attribute: the test records findings (a failure without one is an error of the harness)
MAX_SAMPLES, MAX_FEATURES, MAX_TABLE_ROWS = 6, 6, 200


def esc(x) -> str:
    return html.escape(str(x), quote=True)


# ----------------------------------------------------------------------------- where the test ran


def html_table(title: str, table: dict) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table["columns"])
    rows = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in table["rows"][:MAX_TABLE_ROWS])
    more = f"<p>... {len(table['rows']) - MAX_TABLE_ROWS} more rows</p>" if len(table["rows"]) > MAX_TABLE_ROWS else ""
    return (f"<details class='harness-table'><summary>{esc(title)} ({len(table['rows'])} rows)</summary>"
            f"<table border='1' cellpadding='3'><tr>{head}</tr>{rows}</table>{more}</details>")


def row_extras(findings: list[Finding], extras) -> list:
    """pytest-html extras of a test's row: each finding's tables (collapsed) and plots. The
    finding's message is the row's log (see `replace_log`)."""
    out = []
    for f in findings:
        if f.tables:
            out.append(extras.html("<div class='finding'>" + "".join(html_table(k, v) for k, v in f.tables.items()) + "</div>"))
        for title, png in f.plots.items():
            out.append(extras.png(base64.b64encode(png_of(png)).decode(), name=f"{f.check}: {title}"))
    return out


def plot_records(findings: list[Finding]) -> list:
    """The plots the summary shows (failed and warned findings), JSON-safe to cross from an xdist worker."""
    return [[f.check, title, base64.b64encode(png_of(png)).decode()] for f in findings if f.status in (FAIL, WARN)
            for title, png in f.plots.items() if png]


def failed_on_finding(call, findings: list[Finding]) -> bool:
    """Whether the test failed on the assert of a failed finding (`assert finding.ok, finding.message()`),
    not on an error of its own: only then does the finding's message replace the traceback."""
    exc = getattr(call, "excinfo", None)
    if exc is None or not isinstance(exc.value, AssertionError):
        return False
    text = " ".join(str(exc.value).split())  # assert rewriting re-indents the message's lines and appends "assert False ..."
    return any(f.status == FAIL and text.startswith(" ".join(f.message().split())) for f in findings)


def verdict_text(findings: list[Finding]) -> str:
    """A failed test's longrepr: its failed findings' messages (the terminal and the report show this)."""
    return "\n".join(f.message() for f in findings if f.status == FAIL)


# ----------------------------------------------------------------------------- on the controller


class HtmlSummary:
    """Controller-side: gathers the plots and the harness tests that failed without a finding,
    and writes the summary at the top of pytest-html's report. `findings()` gives the finding
    dicts (the FindingsReporter's, root causes linked by then)."""

    def __init__(self, findings: Callable[[], list]):
        self.findings = findings
        self.plots: list = []
        self.errors: list = []  # (test id, phase, first line of the error) of harness tests without a finding

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.plots += getattr(report, PLOTS_ATTR, None) or []
        if report.failed and getattr(report, HARNESS_ATTR, False) and not _report_findings(report):
            self.errors.append((report.nodeid, report.when, _crash_line(report)))

    def pytest_html_report_title(self, report):
        report.title = f"CSLR harness report: {report.title}"

    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        page = render_summary(self.findings(), self.plots, self.errors)
        if page:
            prefix.insert(0, page)

    def pytest_html_results_table_html(self, report, data):
        replace_log(report, data)


def _report_findings(report) -> list[dict]:
    import json

    return [json.loads(v) for k, v in getattr(report, "user_properties", ()) if k == "finding"]


def _crash_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0] if crash.message else ""
    lines = [ln for ln in str(report.longrepr or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def replace_log(report, data: list) -> None:
    """The row of a test that recorded findings: their messages, where pytest-html puts the
    longrepr (the traceback of the assert, or the skip's location tuple); captured output stays.
    A failure of the test's own (an exception, another assert) keeps its traceback after them."""
    found = _report_findings(report)
    if not found:
        return
    messages = html.escape("\n".join(Finding.from_json(d).message() for d in found)) + "\n"
    if data and data[0] == "No log output captured.":
        data.pop(0)
    elif report.longreprtext and data and data[0] == html.escape(report.longreprtext) + "\n":
        ours = report.skipped or report.longreprtext == verdict_text([Finding.from_json(d) for d in found])
        if ours:
            data.pop(0)
    data.insert(0, messages)


# ----------------------------------------------------------------------------- the page


def _suite_order() -> dict:
    try:
        from harness.suite import CHECKS

        return {c.name: i for i, c in enumerate(CHECKS)}
    except Exception:  # noqa: BLE001 - the order is cosmetic; the findings' arrival order stands
        return {}


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def order_findings(findings: list[dict]) -> list[dict]:
    """Failed (root causes, then those with caused_by), warned, passed, skipped; within each, the
    suite's table order (the same page with and without xdist, whose findings arrive in any order)."""
    suite = _suite_order()

    def key(item):
        i, f = item
        status = f["status"] if f["status"] in GROUPS else FAIL
        base = f["check"].split("[")[0]
        caused = bool(status == FAIL and (f.get("values") or {}).get("caused_by"))
        return GROUPS.index(status), caused, suite.get(base, len(suite)), _natural(f["check"]) if base in suite else [], i

    return [f for _, f in sorted(enumerate(findings), key=key)]


def _cause_of(f: dict) -> str:
    return str((f.get("values") or {}).get("caused_by") or "") if f["status"] == FAIL else ""


def _own_summary(f: dict) -> str:
    """The summary without a leading "caused by X: " (the row shows the cause on its own)."""
    cause, s = _cause_of(f), f.get("summary", "")
    prefix = f"caused by {cause}: "
    return s[len(prefix):] if cause and s.startswith(prefix) else s


def _clip(items: list, n: int, cls: str) -> str:
    if not items:
        return ""
    shown = ", ".join(f"<span class='id'>{esc(x)}</span>" for x in items[:n])
    more = f" <span class='more'>+{len(items) - n} more</span>" if len(items) > n else ""
    return f"<span class='{cls}' title='{esc(', '.join(map(str, items[:100])))}'>{shown}{more}</span> <span class='count'>({len(items)})</span>"


def _samples_cell(f: dict, status: str) -> str:
    samples = f.get("samples") or []
    if status in (FAIL, WARN) or not samples:
        return _clip(samples, MAX_SAMPLES, "ids")
    # a passed check's samples are the ones it ran on, not offenders: their number, the ids on hover
    return f"<span class='count' title='{esc(', '.join(map(str, samples[:100])))}'>{len(samples)} sample(s)</span>"


def _summary_cell(f: dict) -> str:
    text = _own_summary(f)
    parts = []
    cause = _cause_of(f)
    if cause:
        parts.append(f"<span class='cause'>caused by {esc(cause)}</span> ")
    head, rest = text, ""
    cut = text.find("; ", 200)  # a long summary: its first clauses (the cause) shown, the rest folded
    if len(text) > (700 if f["status"] == WARN else 450) and cut > 0:
        head, rest = text[:cut], text[cut + 2:]
    parts.append(esc(head))
    if rest:
        parts.append(f"<details class='rest'><summary>more</summary>{esc(rest)}</details>")
    if f.get("modality"):
        parts.append(f"<div class='sub'>modality: {esc(f['modality'])}</div>")
    if f.get("features"):
        parts.append(f"<div class='sub'>features: {_clip(f['features'], MAX_FEATURES, 'ids')}</div>")
    return "".join(parts)


def _row(f: dict) -> str:
    status = f["status"] if f["status"] in GROUPS else FAIL
    key = (f.get("values") or {}).get("key", "") if status != SKIP else "-"
    cls = f"st-{status}" + (" caused" if _cause_of(f) else "")
    return (f"<tr class='{cls}'><td class='check'>{esc(f['check'])}</td>"
            f"<td><span class='pill {status}'>{status}</span></td>"
            f"<td class='key'>{esc(key if key is not None else '')}</td>"
            f"<td class='found'>{_summary_cell(f)}</td>"
            f"<td class='samples'>{_samples_cell(f, status)}</td>"
            f"<td class='hint'>{esc(f.get('hint', '')) if status in (FAIL, WARN) else ''}</td></tr>")


def _banner(rows: list[dict], errors: list) -> str:
    n = {s: sum(1 for f in rows if f["status"] == s) for s in GROUPS}
    failed = [f for f in rows if f["status"] == FAIL]
    roots = [f for f in failed if not _cause_of(f)]
    failed_count = f"<b>{n[FAIL]} failed</b>" if n[FAIL] else "0 failed"
    counts = (f"{len(rows)} check{'' if len(rows) == 1 else 's'}: {failed_count}, {n[WARN]} warned, {n[PASS]} passed, {n[SKIP]} skipped"
              if rows else "no check recorded a finding")
    lines = []
    if failed or errors:
        verdict, cls = "FAILED", FAIL
        if failed:
            names = ", ".join(f"<b>{esc(f['check'])}</b>" for f in roots[:4]) + (" ..." if len(roots) > 4 else "")
            caused = len(failed) - len(roots)
            word = "Root cause" if len(roots) == 1 else "Root causes" if caused else "Failed"
            tail = f" &mdash; the other {caused} failure(s) are caused by {'it' if len(roots) == 1 else 'them'}" if caused else ""
            lines.append(f"{word}: {names}{tail}")
            if roots and roots[0].get("hint"):
                lines.append(f"What to do: {esc(roots[0]['hint'])}")
        if errors:
            lines.append(f"{len(errors)} harness test(s) errored without a finding: " + esc(errors[0][2] or errors[0][0]))
    elif n[WARN]:
        verdict, cls = "PASSED", WARN
        lines.append("with warnings: " + ", ".join(f"<b>{esc(f['check'])}</b>" for f in rows if f["status"] == WARN) + " (they do not block training)")
    else:
        verdict, cls = "PASSED", PASS
        lines.append("no check failed or warned")
    body = "".join(f"<div>{ln}</div>" for ln in lines)
    return (f"<div class='verdict {cls}'><div class='word'>{verdict}</div>"
            f"<div class='text'><div>{counts}</div>{body}</div></div>")


def _errors_table(errors: list) -> str:
    if not errors:
        return ""
    rows = "".join(f"<tr class='st-fail'><td class='check'>{esc(nid)}</td><td><span class='pill fail'>error</span></td>"
                   f"<td class='found' colspan='4'>{esc(when)}: {esc(line)}</td></tr>" for nid, when, line in errors[:20])
    return rows


def _plots(plots: list, order: list[dict]) -> str:
    if not plots:
        return ""
    pos = {f["check"]: i for i, f in enumerate(order)}
    figs = "".join(
        f"<figure><img src='data:image/png;base64,{b64}' alt='{esc(title)}' title='click to enlarge' "
        f"onclick=\"this.classList.toggle('big')\"/><figcaption><b>{esc(check)}</b>: {esc(title)}</figcaption></figure>"
        for check, title, b64 in sorted(plots, key=lambda p: pos.get(p[0], len(pos))))
    return f"<div class='plots'><h3>Plots of the failed and warned checks</h3>{figs}</div>"


STYLE = """
#harness-summary{color:#222;font-size:13px;margin:8px 0 18px;max-width:1800px}
#harness-summary .verdict{display:flex;align-items:center;gap:16px;padding:10px 14px;border-radius:4px;margin-bottom:10px;border:1px solid}
#harness-summary .verdict .word{font-size:26px;font-weight:bold;letter-spacing:1px}
#harness-summary .verdict .text{font-size:14px;line-height:1.45}
#harness-summary .verdict.fail{background:#fdecea;border-color:#e0a9a4}
#harness-summary .verdict.fail .word{color:#b3261e}
#harness-summary .verdict.warn{background:#fff6e0;border-color:#e8cf8f}
#harness-summary .verdict.warn .word{color:#1e7b34}
#harness-summary .verdict.pass{background:#e8f5ec;border-color:#9fd0ad}
#harness-summary .verdict.pass .word{color:#1e7b34}
#harness-summary table.findings{border-collapse:collapse;width:100%}
#harness-summary table.findings th{text-align:left;background:#f0f0f0;color:#333;padding:4px 6px;border-bottom:2px solid #ccc;font-weight:bold}
#harness-summary table.findings td{padding:4px 6px;border-bottom:1px solid #e4e4e4;vertical-align:top}
#harness-summary td.check{font-family:monospace;font-size:13px;white-space:nowrap;font-weight:bold}
#harness-summary td.key{white-space:nowrap;font-family:monospace;font-size:12px}
#harness-summary td.found{min-width:340px;max-width:720px}
#harness-summary td.samples{font-family:monospace;font-size:12px;min-width:230px;max-width:300px}
#harness-summary td.hint{max-width:380px;color:#333}
#harness-summary tr.st-fail td.hint{font-weight:bold}
#harness-summary tr.st-fail.caused td.hint{font-weight:normal;color:#666}
#harness-summary .id{white-space:nowrap}
#harness-summary tr.st-fail{background:#fff7f6}
#harness-summary tr.st-fail.caused{background:#fff}
#harness-summary tr.st-fail.caused td{color:#444}
#harness-summary tr.st-warn{background:#fffbef}
#harness-summary tr.st-pass td,#harness-summary tr.st-skip td{color:#666;font-size:12px;padding-top:2px;padding-bottom:2px}
#harness-summary tr.st-pass td.check,#harness-summary tr.st-skip td.check{font-weight:normal}
#harness-summary .pill{display:inline-block;min-width:38px;text-align:center;border-radius:3px;padding:1px 5px;font-weight:bold;font-size:11px;text-transform:uppercase;color:#fff}
#harness-summary .pill.fail{background:#c62828}
#harness-summary .pill.warn{background:#e0a000}
#harness-summary .pill.pass{background:#2e7d32}
#harness-summary .pill.skip{background:#9e9e9e}
#harness-summary .cause{display:inline-block;background:#f3d6d3;color:#8a1c14;border-radius:3px;padding:0 5px;font-weight:bold;font-size:12px}
#harness-summary .sub{color:#555;font-size:12px;margin-top:2px}
#harness-summary .count,#harness-summary .more{color:#777}
#harness-summary details.rest{display:inline;color:#444}
#harness-summary details.rest summary{display:inline;cursor:pointer;color:#1a5fb4;font-size:12px;margin-left:4px}
#harness-summary details.rest[open] summary{display:block;margin-left:0}
#harness-summary .plots figure{display:inline-block;margin:0 12px 8px 0;vertical-align:top}
#harness-summary .plots img{height:170px;border:1px solid #ddd;cursor:zoom-in}
#harness-summary .plots img.big{height:auto;max-width:95vw;cursor:zoom-out}
#harness-summary .plots figcaption{font-size:12px;color:#444}
#harness-summary h3{font-size:14px;margin:14px 0 6px;color:#222}
#harness-summary .note{color:#666;font-size:12px;margin-top:6px}
"""

# the summary is rendered inside pytest-html's "Summary" block, below the environment table: move
# it to the top of the page, under the title (without script it stays above the results table)
MOVE_UP = ("<script>(function(){var s=document.getElementById('harness-summary'),e=document.getElementById('environment-header');"
           "if(s&&e){e.parentNode.insertBefore(s,e);}})();</script>")


def render_summary(findings: list[dict], plots: list | None = None, errors: list | None = None, standalone: bool = False) -> str:
    """The summary section (HTML) from finding dicts; "" when no harness test ran. `standalone`:
    for a page of its own or a notebook (harness.api.Report), not inside pytest-html's report."""
    errors = errors or []
    if not findings and not errors:
        return ""
    rows = order_findings(findings)
    table = ("<table class='findings'><thead><tr><th>check</th><th>status</th><th>key figure</th><th>what was found</th>"
             "<th>samples</th><th>hint</th></tr></thead><tbody>"
             + _errors_table(errors) + "".join(_row(f) for f in rows) + "</tbody></table>")
    if standalone:
        note = "<div class='note'>Hover over samples or features for the full list.</div>"
    else:
        note = ("<div class='note'>Every check's full record (its tables, plots and captured output) is its row in the "
                "results table below; hover over samples or features for the full list.</div>")
    return (f"<section id='harness-summary'><style>{STYLE}</style>{_banner(rows, errors)}{table}"
            f"{_plots(plots or [], rows)}{note}</section>{'' if standalone else MOVE_UP}")


def page(findings: list[Finding], title: str = "CSLR harness report") -> str:
    """A self-contained HTML page of findings (harness.api.Report.to_html): the summary, its
    plots, then each failed or warned finding's full message and tables."""
    dicts = [f.to_json() for f in findings]
    details = []
    for f in sorted((f for f in findings if f.status in (FAIL, WARN)), key=lambda f: GROUPS.index(f.status)):
        tables = "".join(html_table(k, v) for k, v in f.tables.items())
        details.append(f"<div class='finding'><h3>{esc(f.check)}</h3><pre>{esc(f.message())}</pre>{tables}</div>")
    body = render_summary(dicts, plot_records(findings), standalone=True) or "<p>no check recorded a finding</p>"
    more = f"<section id='harness-details'><h2>Failed and warned checks</h2>{''.join(details)}</section>" if details else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            "<style>body{font-family:sans-serif;margin:16px}pre{white-space:pre-wrap;font-size:12px;background:#f7f7f7;padding:6px}</style>"
            f"</head><body><h1>{esc(title)}</h1>{body}{more}</body></html>\n")


# ----------------------------------------------------------------------------- drift (python -m harness drift --html)


DRIFT_STYLE = """
#harness-drift{color:#222;font-size:13px;max-width:1400px}
#harness-drift .verdict{padding:8px 12px;border-radius:4px;border:1px solid;margin:6px 0 10px;font-size:14px;line-height:1.45}
#harness-drift .verdict.warn{background:#fff6e0;border-color:#e8cf8f}
#harness-drift .verdict.pass{background:#e8f5ec;border-color:#9fd0ad}
#harness-drift .verdict.skip{background:#f2f2f2;border-color:#ccc}
#harness-drift .verdict .word{font-weight:bold;font-size:18px;margin-right:10px}
#harness-drift table.drift{border-collapse:collapse;width:100%}
#harness-drift table.drift th{text-align:left;background:#f0f0f0;padding:4px 6px;border-bottom:2px solid #ccc}
#harness-drift table.drift td{padding:4px 6px;border-bottom:1px solid #e4e4e4;vertical-align:top}
#harness-drift td.group,#harness-drift td.score,#harness-drift td.threshold{font-family:monospace;font-size:12px;white-space:nowrap}
#harness-drift tr.v-drift{background:#fffbef}
#harness-drift tr.v-drift td.group{font-weight:bold}
#harness-drift tr.v-info td,#harness-drift tr.v-skipped td,#harness-drift tr.v-n\\/a td{color:#777}
#harness-drift .pill{display:inline-block;min-width:44px;text-align:center;border-radius:3px;padding:1px 5px;font-weight:bold;font-size:11px;text-transform:uppercase;color:#fff;background:#9e9e9e}
#harness-drift .pill.drift{background:#e0a000}
#harness-drift .pill.ok{background:#2e7d32}
#harness-drift .pill.beyond{background:#b08d57}
#harness-drift figure{display:inline-block;margin:0 14px 10px 0;vertical-align:top}
#harness-drift figure img{max-height:260px;border:1px solid #ddd}
#harness-drift figcaption{font-size:12px;color:#444}
#harness-drift h3{font-size:14px;margin:14px 0 6px}
"""


def _score_text(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def drift_section(finding: Finding, reference: str = "", data: str = "") -> str:
    """The drift section of a report (harness/checks/drift.py: check_drift): the verdict, one row a
    feature group (measure, score, threshold, verdict, named finding with its fix), then one plot a
    drifted group (training vs new, the finding's PNGs, titled "<group>: ...") inline as base64."""
    samples = finding.values.get("samples", {})
    word = {WARN: "DRIFT", PASS: "NO DRIFT"}.get(finding.status, "NOT COMPARED")
    where = (f"{samples.get('new', '?')} new samples" + (f" ({esc(data)})" if data else "")
             + f" vs {samples.get('reference', '?')} in training" + (f" ({esc(reference)})" if reference else ""))
    fired = finding.values.get("fired", [])
    text = "".join(f"<div>{esc(f['text'])}; <b>fix:</b> {esc(f['fix'])}</div>" for f in fired) or f"<div>{esc(finding.summary)}</div>"
    parts = ["<h2>Drift: new data vs what the model was trained on</h2>",
             f"<div class='verdict {esc(finding.status)}'><span class='word'>{word}</span>{where}{text}</div>"]
    rows = finding.values.get("rows", [])
    if rows:
        body = "".join(
            f"<tr class='v-{esc(r['verdict'])}'><td class='group'>{esc(r['group'])}</td><td>{esc(r['measure'])}</td>"
            f"<td class='score'>{esc(_score_text(r['score']))}</td><td class='threshold'>{esc(r['threshold'])}</td>"
            f"<td><span class='pill {esc(r['verdict'])}'>{esc(r['verdict'])}</span></td><td>{esc(r['finding'])}</td></tr>"
            for r in rows)
        parts.append("<table class='drift'><thead><tr><th>group</th><th>measure</th><th>score</th><th>threshold</th>"
                     f"<th>verdict</th><th>named finding</th></tr></thead><tbody>{body}</tbody></table>")
    figures = "".join(
        f"<figure data-group='{esc(title.split(':')[0])}'><img src='data:image/png;base64,{base64.b64encode(png_of(png)).decode()}' alt='{esc(title)}'/>"
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, png in finding.plots.items() if png)
    if figures:
        parts.append(f"<h3>The drifted groups, training vs new</h3>{figures}")
    return f"<section id='harness-drift'><style>{DRIFT_STYLE}</style>{''.join(parts)}</section>"


def drift_page(finding: Finding, reference: str = "", data: str = "", title: str = "CSLR drift report") -> str:
    """A self-contained HTML page holding the drift section (python -m harness drift --html)."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            "<style>body{font-family:sans-serif;margin:16px}</style>"
            f"</head><body><h1>{esc(title)}</h1>{drift_section(finding, reference, data)}</body></html>\n")
