"""MediaPipe's native INFO/WARNING log lines filtered off stderr; every other line kept, prefixed with its sample."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from contextlib import contextmanager

# MediaPipe's C++ code logs through absl (and TFLite through its own logger) straight to file
# descriptor 2: per Holistic start "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", the
# absl::InitializeLog notice, eight "Feedback manager requires a model with a single signature
# inference" warnings and a NORM_RECT one, i.e. hundreds of lines a run around the progress bar.
# None of GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL or absl's Python logging reaches that logger
# (measured with mediapipe 0.10.21), so fd 2 itself is filtered: it is pointed at a pipe read by a
# small separate process that drops the INFO/WARNING lines of those loggers and passes every
# other line on (errors, fatal messages, OpenCV's, Python's), prefixed with the sample being
# extracted. Being another process, it still passes on a fatal message written just before a
# native crash. CSLR_MEDIAPIPE_LOGS=1 turns the filter off.
SHOW_NATIVE_LOGS_ENV = "CSLR_MEDIAPIPE_LOGS"
NATIVE_NOISE = (
    r"[IW]\d{4,8} \d\d:\d\d:\d+\.\d+ +\d+ [^\s:\]]+:\d+\] "  # absl / glog INFO and WARNING (E and F are kept)
    r"|INFO: "  # TFLite's INFO lines ("Created TensorFlow Lite XNNPACK delegate for CPU.")
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
)
_SAMPLE_MARK = b"\x00cslr-sample:"  # a line telling the filter which sample the next lines belong to (as in _FILTER_SOURCE)
_FILTER_SOURCE = r"""
import re, sys
noise, mark, label = re.compile(sys.argv[1].encode()), b"\x00cslr-sample:", b""
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if line.startswith(mark):
        label = line[len(mark):].rstrip(b"\n")
    elif not noise.match(line):
        out.write(label + b": " + line if label and line.strip() else line)
        out.flush()
"""
_filter_lock = threading.Lock()
_filter: dict = {"depth": 0, "proc": None, "saved": None, "real": None}


def native_noise(line: str) -> bool:
    """True for a line of MediaPipe's native INFO/WARNING log (what the filter drops)."""
    return re.match(NATIVE_NOISE, line) is not None


def _start_filter():
    """Point fd 2 at a filter process writing to the current fd 2. Returns (process, saved fd 2) or None."""
    if os.environ.get(SHOW_NATIVE_LOGS_ENV, "").strip() not in ("", "0"):
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to filter
        return None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, NATIVE_NOISE],
            stdin=subprocess.PIPE, stdout=saved, start_new_session=True,  # own session: Ctrl+C does not kill it
        )
    except OSError:
        os.close(saved)
        return None
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()  # fd 2 is now the only write end held here
    return proc, saved


def filter_native_logs_of_this_process() -> None:
    """Filter fd 2 until this process ends (extraction worker processes; quiet_native_logs() nests inside)."""
    with _filter_lock:
        if _filter["proc"] is None:
            started = _start_filter()
            if started is not None:
                proc, saved = started
                real = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
                _filter.update(proc=proc, saved=None, real=real)
                _filter["depth"] += 1  # never released: the filter ends when this process's fd 2 closes


def mark_sample(label: str) -> None:
    """Tell the filter (if fd 2 goes through one) that the lines which follow belong to `label`."""
    if _filter["proc"] is not None:
        try:
            os.write(2, _SAMPLE_MARK + label.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        except OSError:
            pass


@contextmanager
def quiet_native_logs():
    """Filter MediaPipe's native INFO/WARNING lines off fd 2 in this block; yields a text stream to the
    unfiltered stderr (for a progress bar). Nested and concurrent blocks share one filter."""
    with _filter_lock:
        if _filter["depth"] == 0:
            started = _start_filter()
            if started is not None:
                proc, saved = started
                real = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
                _filter.update(proc=proc, saved=saved, real=real)
        _filter["depth"] += 1
        real = _filter["real"] or sys.stderr
    try:
        yield real
    finally:
        with _filter_lock:
            _filter["depth"] -= 1
            if _filter["depth"] == 0 and _filter["proc"] is not None:
                proc, saved, real = _filter["proc"], _filter["saved"], _filter["real"]
                _filter.update(proc=None, saved=None, real=None)
                try:
                    sys.stderr.flush()
                except (AttributeError, OSError, ValueError):
                    pass
                real.close()
                os.dup2(saved, 2)  # the pipe's last write end here closes: the filter drains and exits
                os.close(saved)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # a child still holds the pipe; it ends with that child
                    pass
