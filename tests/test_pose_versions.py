""".pose files of every pose-format header version, and the clear errors for ones the importer cannot read.

Issue 13: an old-format .pose (header v0.0) failed with a bare `struct.error: unpack_from
requires a buffer ...`. pose-format 0.15.0 reads v0.0, v0.1 and v0.2 (pose_format/pose_body.py:
read_v0_0 .. read_v0_2; the header layout is the same in all three), so files that follow their
version's layout import; a file cut short, garbage under a .pose name, or a version newer than
the installed pose-format reads is reported naming the file, the version found and what to do,
by `python -m data.convert pose FILE...` without a traceback.

The files are written by hand with struct.pack, following pose_format/pose_header.py and
pose_body.py of pose-format 0.15.0 (and the v0.0 spec: per frame a people count, per person an
id and its components' points, X Y Z C floats each).
"""
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.convert import POSE_VERSIONS, ConvertError, check_pose_bytes, pose_to_array
from data.convert.__main__ import main
from data.corpus import read_manifest
from data.layout import LAYOUT, RAW_DIM

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 480, 25
# pose-format's MediaPipe Holistic components, in its order (the project layout orders them differently)
COMPONENTS = (("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", 468), ("LEFT_HAND_LANDMARKS", 21), ("RIGHT_HAND_LANDMARKS", 21))
BLOCK = {"POSE_LANDMARKS": LAYOUT.pose, "FACE_LANDMARKS": LAYOUT.face, "LEFT_HAND_LANDMARKS": LAYOUT.left_hand,
         "RIGHT_HAND_LANDMARKS": LAYOUT.right_hand}
N_POINTS = sum(n for _, n in COMPONENTS)


def _str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<H", len(raw)) + raw


def pose_header(version: float, fmt: str = "XYZC") -> bytes:
    """[float version][ushort width, height, depth][ushort components], each component: name,
    format, ushort points/limbs/colors, point names, limbs (2 ushort), colors (3 ushort)."""
    out = struct.pack("<f", version) + struct.pack("<HHH", WIDTH, HEIGHT, 0) + struct.pack("<H", len(COMPONENTS))
    for name, n in COMPONENTS:
        limbs = [(i, i + 1) for i in range(min(n - 1, 3))]
        out += _str(name) + _str(fmt) + struct.pack("<HHH", n, len(limbs), len(limbs))
        out += b"".join(_str(str(i)) for i in range(n))
        out += b"".join(struct.pack("<HH", a, b) for a, b in limbs)
        out += b"".join(struct.pack("<HHH", 255, 0, 0) for _ in limbs)
    return out


def landmarks(frames: int = 4, people: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(points [T, people, 543, 3] in pixels/z, confidence [T, people, 543]) with undetected parts."""
    rng = np.random.default_rng(seed)
    xyz = (rng.random((frames, people, N_POINTS, 3)) * [WIDTH, HEIGHT, 1]).astype(np.float32)
    conf = np.ones((frames, people, N_POINTS), np.float32)
    conf[1, :, 33 + 468 : 33 + 468 + 21] = 0  # left hand not detected in frame 1
    conf[2, :, :33] = 0  # pose not detected in frame 2
    return xyz, conf


def pose_body(version: float, xyz: np.ndarray, conf: np.ndarray, people_per_frame=None) -> bytes:
    frames, people = xyz.shape[:2]
    if version == 0.0:
        out = struct.pack("<HH", FPS, frames)
        for t in range(frames):
            n = people if people_per_frame is None else people_per_frame[t]
            out += struct.pack("<H", n)
            for p in range(n):
                out += struct.pack("<h", p)
                out += np.concatenate([xyz[t, p], conf[t, p, :, None]], axis=-1).astype("<f4").tobytes()  # X Y Z C a point
        return out
    if version == 0.1:
        head = struct.pack("<HHH", FPS, frames, people)
    else:
        head = struct.pack("<f", FPS) + struct.pack("<I", frames) + struct.pack("<H", people)
    return head + xyz.astype("<f4").tobytes() + conf.astype("<f4").tobytes()


def pose_file(path: Path, version: float, xyz=None, conf=None, **kw) -> Path:
    if xyz is None:
        xyz, conf = landmarks()
    path.write_bytes(pose_header(version) + pose_body(version, xyz, conf, **kw))
    return path


def expected(xyz: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """The project array pose_to_array must give: person 0, x / width, y / height, z, NaN where conf 0."""
    out = np.full((xyz.shape[0], RAW_DIM), np.nan, np.float32)
    start = 0
    for name, n in COMPONENTS:
        part = xyz[:, 0, start : start + n].astype(np.float64) / [WIDTH, HEIGHT, 1]
        part[conf[:, 0, start : start + n] == 0] = np.nan
        out[:, BLOCK[name]] = part.reshape(len(xyz), n * 3)
        start += n
    return out


# ----------------------------------------------------------------------------- readable versions


def test_hand_written_v02_is_what_pose_format_writes(tmp_path):
    """The builder follows the format: pose-format re-writes a hand-written v0.2 file byte for byte."""
    import io

    from pose_format import Pose

    data = pose_file(tmp_path / "a.pose", 0.2).read_bytes()
    buf = io.BytesIO()
    Pose.read(data).write(buf)
    assert buf.getvalue() == data


@pytest.mark.parametrize("version", POSE_VERSIONS, ids=lambda v: f"v{v:.1f}")
def test_every_header_version_imports(version, tmp_path):
    xyz, conf = landmarks()
    path = pose_file(tmp_path / "clip.pose", version, xyz, conf)
    assert check_pose_bytes(path, path.read_bytes()) == version
    np.testing.assert_allclose(pose_to_array(path), expected(xyz, conf), rtol=1e-6, equal_nan=True)


def test_v00_person_zero_and_frames_without_people(tmp_path):
    """v0.0 stores people frame by frame: person 0 is imported, a frame without people is all NaN."""
    xyz, conf = landmarks(frames=3, people=2)
    path = pose_file(tmp_path / "two.pose", 0.0, xyz, conf, people_per_frame=[2, 0, 1])
    got = pose_to_array(path)
    want = expected(xyz, conf)
    want[1] = np.nan
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_v00_file_through_the_command(tmp_path):
    path = pose_file(tmp_path / "old.pose", 0.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,glosses,split\nold,HELLO WORLD,train\n")
    assert main(["pose", str(path), "--labels", str(labels), "--out", str(tmp_path / "corpus")]) == 0
    (rec,) = read_manifest(tmp_path / "corpus")
    assert rec.id == "old" and rec.glosses == ("HELLO", "WORLD") and rec.fps == FPS


# ----------------------------------------------------------------------------- files it cannot read


def _whole(version: float) -> bytes:
    xyz, conf = landmarks()
    return pose_header(version) + pose_body(version, xyz, conf)


BAD_FILES = {
    # name: (bytes, phrases the message must hold besides the file name)
    "v00_cut": (lambda: _whole(0.0)[:-100], ["v0.0", "truncated", "announces 4 frame(s)", "inside frame 4", "video_to_pose"]),
    "v00_cut_before_frames": (lambda: pose_header(0.0) + b"\x19", ["v0.0", "truncated", "frame count"]),
    "v01_cut": (lambda: _whole(0.1)[:-5000], ["v0.1", "does not match its header", "announces 4 frame(s)", "cut short"]),
    "v02_cut": (lambda: _whole(0.2)[:-1], ["v0.2", "truncated", "announces 4 frame(s)", "copy it again"]),
    "header_cut": (lambda: pose_header(0.2)[:500], ["v0.2 header cut short", "copy it again"]),
    "v03": (lambda: struct.pack("<f", 0.3) + _whole(0.2)[4:], ["header version 0.3", "pose-format 0.15.0", "0.0, 0.1, 0.2",
                                                              "pip install -U pose-format"]),
    "garbage": (lambda: b"\x00\x01 not a pose file at all" * 10, ["its first 4 bytes read as header version", "right file"]),
    "empty": (lambda: b"", ["0 byte(s), too short", "video_to_pose"]),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_unreadable_files_are_named_with_version_and_fix(name, tmp_path):
    make, phrases = BAD_FILES[name]
    path = tmp_path / f"{name}.pose"
    path.write_bytes(make())
    with pytest.raises(ConvertError) as info:
        pose_to_array(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable .pose file: "), message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in: {message}"
    assert "unpack_from" not in message and "struct.error" not in message


def test_v01_with_a_wrong_frame_count_is_not_misread(tmp_path):
    """pose-format derives v0.1's frame count from the size; a count that disagrees would make it read
    confidences from the coordinates. It is reported instead."""
    xyz, conf = landmarks()
    body = bytearray(pose_body(0.1, xyz, conf))
    body[2:4] = struct.pack("<H", 9)  # 9 frames announced, 4 stored
    path = tmp_path / "wrong.pose"
    path.write_bytes(pose_header(0.1) + bytes(body))
    with pytest.raises(ConvertError, match=r"wrong.pose: .*v0.1 body does not match its header: it announces 9 frame"):
        pose_to_array(path)


def test_empty_pose_files_say_nothing_to_import(tmp_path):
    xyz, conf = np.zeros((0, 1, N_POINTS, 3), np.float32), np.zeros((0, 1, N_POINTS), np.float32)
    for version in POSE_VERSIONS:
        path = tmp_path / f"none{version}.pose"
        path.write_bytes(pose_header(version) + (struct.pack("<HH", FPS, 0) if version == 0.0 else pose_body(version, xyz, conf)))
        with pytest.raises(ConvertError, match=r"0 frames|zero frames"):
            pose_to_array(path)


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "data.convert", "pose", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_command_reports_bad_files_without_traceback(tmp_path):
    """`python -m data.convert pose FILE...`: each bad file named with its version and the fix, the good one
    imported, exit 1; with only bad files exit 2; never a traceback."""
    files = [pose_file(tmp_path / "good.pose", 0.0)]
    for name in ("v00_cut", "v02_cut", "v03", "garbage"):
        files.append(tmp_path / f"{name}.pose")
        files[-1].write_bytes(BAD_FILES[name][0]())
    labels = tmp_path / "labels.csv"
    labels.write_text("id,glosses,split\n" + "".join(f"{f.stem},HELLO,train\n" for f in files))

    done = _run([*map(str, files), "--labels", str(labels), "--out", str(tmp_path / "c1")], REPO)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out and "struct.error" not in out
    assert "converted 1" in out
    for name, version in (("v00_cut", "v0.0"), ("v02_cut", "v0.2"), ("v03", "header version 0.3")):
        line = next(ln for ln in out.splitlines() if f"{name}.pose" in ln)
        assert "FAILED" in line and version in line, line
    assert [r.id for r in read_manifest(tmp_path / "c1")] == ["good"]

    done = _run([str(f) for f in files[1:]] + ["--labels", str(labels), "--out", str(tmp_path / "c2")], REPO)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out and "v00_cut.pose: not a readable .pose file: truncated: its pose-format v0.0 body" in out
