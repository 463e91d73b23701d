"""MediaPipe's native log lines stay off the terminal of `python -m data.extract`; real errors do not.

Issue 13: hundreds of "Feedback manager requires a model with a single signature inference",
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and absl lines a run, around the
progress bar. They come from C++ loggers writing to fd 2 that no environment variable reaches
(GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL: measured, no effect with mediapipe 0.10.21), so the
extraction filters fd 2 through a separate process (data/extract/quiet.py: quiet_native_logs).
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data.extract import NATIVE_NOISE, SHOW_NATIVE_LOGS_ENV, native_noise, quiet_native_logs

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO / ".." / "shared" / "data" / "videos"
# what the extraction printed before, a few of each a sample (W lines as absl writes them)
NOISE = [
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "W0000 00:00:1796130485.963820   16329 inference_feedback_manager.cc:114] Feedback manager requires a model with a "
    "single signature inference. Disabling support for feedback tensors.",
    "W0000 00:00:1796130486.144743   16329 landmark_projection_calculator.cc:186] Using NORM_RECT without IMAGE_DIMENSIONS "
    "is only supported for the square ROI. Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX.",
    "I20250101 12:00:01.123456  4242 gl_context.cc:357] GL version: 3.2",
]
NATIVE_MARKERS = ("Feedback manager", "XNNPACK", "absl::InitializeLog", "NORM_RECT", "gl_context")


def native_lines(text: str) -> list[str]:
    return [ln for ln in text.replace("\r", "\n").splitlines() if any(m in ln for m in NATIVE_MARKERS) or native_noise(ln)]


def video(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


def run(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


# ----------------------------------------------------------------------------- the filter (no MediaPipe)


def test_noise_pattern():
    assert all(native_noise(line) for line in NOISE)
    kept = ["E0000 00:00:1796130485.9   1 graph.cc:1] Calculator failed", "F0000 00:00:1.0 1 x.cc:1] Check failed: ok",
            "Traceback (most recent call last):", "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5596] moov atom not found",
            "WARNING: something else", "warning: 1 sample(s) have empty glosses"]
    assert not any(native_noise(line) for line in kept)
    assert NATIVE_NOISE.startswith("[IW]")  # errors (E) and fatal (F) lines are never dropped


FILTER_PROBE = """
import os, sys
from data.extract import quiet_native_logs, filter_native_logs_of_this_process
from data.extract.quiet import mark_sample
lines = {noise!r}
with quiet_native_logs() as real:
    real.write("progress bar\\n")
    for line in lines:
        os.write(2, (line + "\\n").encode())
    mark_sample("videos/bad.mp4")  # only labels inside a filtered block
    os.write(2, b"E0000 00:00:1.0 1 graph.cc:1] Calculator failed\\n")
    print("python warning", file=sys.stderr)
os.write(2, b"after the block\\n")
"""


def test_filter_drops_noise_keeps_errors_by_sample():
    done = run(FILTER_PROBE.format(noise=NOISE))
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert native_lines(err) == [], err
    assert "progress bar" in err and "after the block" in err and "python warning" in err
    assert "videos/bad.mp4: E0000 00:00:1.0 1 graph.cc:1] Calculator failed" in err.replace("\r", "")
    assert "\x00" not in err  # the sample marks never reach the terminal


def test_labels_only_in_filtered_processes():
    done = run("from data.extract.quiet import mark_sample\nmark_sample('x')\nimport sys; print('plain', file=sys.stderr)")
    assert done.stderr == "plain\n"


def test_fatal_line_before_a_native_crash_survives():
    """The filter is another process: what MediaPipe writes just before abort() still reaches the terminal."""
    done = run("""
        import os
        from data.extract import quiet_native_logs
        with quiet_native_logs():
            os.write(2, b"W0000 00:00:1.0 1 x.cc:1] noise\\nF0000 00:00:1.0 1 graph.cc:9] Check failed: graph ok\\n")
            os.abort()
        """)
    assert done.returncode != 0
    assert "F0000 00:00:1.0 1 graph.cc:9] Check failed: graph ok" in done.stderr
    assert "noise" not in done.stderr


def test_filter_can_be_turned_off():
    done = run(FILTER_PROBE.format(noise=NOISE[:1]), env={SHOW_NATIVE_LOGS_ENV: "1"})
    assert done.returncode == 0 and NOISE[0] in done.stderr


def test_fd2_is_restored_after_the_block(capfd):
    with quiet_native_logs():
        os.write(2, b"W0000 00:00:1.0 1 x.cc:1] dropped\n")
    os.write(2, b"W0000 00:00:1.0 1 x.cc:1] after\n")
    err = capfd.readouterr().err
    assert "dropped" not in err and "after" in err


# ----------------------------------------------------------------------------- real extraction runs


def extract_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data.extract", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # MediaPipe on the real videos, end to end
@pytest.mark.real_data
def test_extraction_prints_no_native_lines(tmp_path):
    """One worker (MediaPipe in the command's own process), progress bar on: stderr is the bar and the
    empty-glosses warning, none of MediaPipe's lines (13 lines before the filter, 11 of them native)."""
    done = extract_cli(video("sample_video.mp4"), "--out", tmp_path / "corpus", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert native_lines(done.stderr) == [], done.stderr
    assert "extract: 100%" in done.stderr and "extracted 1" in done.stdout
    assert (tmp_path / "corpus" / "features" / "sample_video.npy").is_file()


@pytest.mark.slow  # MediaPipe on the real videos, end to end
@pytest.mark.real_data
@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_input_still_reported_by_name(workers, tmp_path):
    """A text file named x.mp4: FAILED naming it, exit 1, OpenCV's own complaint kept and labelled with
    the file; the real video beside it extracted without native noise, in worker processes too."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(video("sample_video.mp4"), inputs / "good.mp4")
    (inputs / "x.mp4").write_text("this is not a video\n")
    done = extract_cli(inputs, "--out", tmp_path / "corpus", "--workers", workers, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED x:" in done.stdout and str(inputs / "x.mp4") in done.stdout and "cannot open" in done.stdout
    assert native_lines(done.stderr) == [], done.stderr
    assert "Traceback" not in done.stderr
    opencv = [ln for ln in done.stderr.splitlines() if "moov atom not found" in ln]
    assert all(ln.startswith(f"{inputs / 'x.mp4'}: ") for ln in opencv), opencv
    assert (tmp_path / "corpus" / "features" / "good.npy").is_file()
