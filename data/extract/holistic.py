"""MediaPipe I/O: frames from a video or a folder of images in, one landmark row a frame out."""
from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from data.layout import COORDS, LAYOUT, N_FACE, N_HAND, N_POSE, RAW_DIM

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# (Holistic result attribute, columns in the raw row, landmarks kept) in layout order
_PARTS = (
    ("pose_landmarks", LAYOUT.pose, N_POSE),
    ("left_hand_landmarks", LAYOUT.left_hand, N_HAND),
    ("right_hand_landmarks", LAYOUT.right_hand, N_HAND),
    ("face_landmarks", LAYOUT.face, N_FACE),  # 478 with iris refinement: the first 468 are the mesh
)


class ExtractError(ValueError):
    """An input that cannot be extracted; the message names the file and what to do."""


# ---------------------------------------------------------------------------- reading frames


def natural_key(name: str) -> list:
    """Sort key putting 'img2.png' before 'img10.png' (digit runs compare as numbers)."""
    # re.split with a group alternates text, number, text, ...: positions always hold the same type
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", name))]


def _visible_files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:  # DirEntry.is_file needs no extra stat call: cheap on big trees
        return [folder / e.name for e in entries if e.is_file() and not e.name.startswith(".")]


def image_files(folder: Path) -> list[Path]:
    """The frame images of a folder in natural order."""
    return sorted((p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def read_frames(source: Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or of a folder of images, each [H, W, 3] uint8 BGR.

    Raises ExtractError (naming the file) for a missing path, a file OpenCV cannot open as a
    video, a folder without images, or an image that cannot be decoded. A video that opens but
    decodes to nothing yields nothing; `extract_sample` reports that.
    """
    source = Path(source)
    if source.is_dir():
        frames = image_files(source)
        if not frames:
            raise ExtractError(f"{source}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); point to a video or a folder of frames")
        for path in frames:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise ExtractError(f"{path}: cannot decode this image (corrupt or not an image); replace or delete it, then re-run")
            yield frame
        return
    if not source.is_file():
        raise ExtractError(f"{source}: no such file or folder; check the path")
    capture = cv2.VideoCapture(str(source))
    try:
        if not capture.isOpened():
            raise ExtractError(
                f"{source}: OpenCV cannot open this as a video (corrupt, truncated, or not a video); "
                "check it plays, or re-encode it (e.g. to H.264 MP4)"
            )
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def video_fps(source: Path) -> float | None:
    """Frames per second stored in a video container; None for folders or when unknown."""
    source = Path(source)
    if not source.is_file():
        return None
    capture = cv2.VideoCapture(str(source))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return float(fps) if np.isfinite(fps) and fps > 0 else None


# ---------------------------------------------------------------------------- landmarks


def new_holistic(model_complexity: int = 1):
    """A fresh MediaPipe Holistic in video mode (tracking across frames), no iris refinement."""
    import mediapipe as mp  # imported here: ~1 s, and only extraction needs it

    if model_complexity not in (0, 1, 2):
        raise ExtractError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    try:
        return mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=model_complexity, refine_face_landmarks=False)
    except Exception as exc:  # complexity 0/2 download their pose model on first use
        raise ExtractError(
            f"MediaPipe Holistic with model_complexity={model_complexity} could not start ({type(exc).__name__}: {exc}); "
            "only model_complexity=1 ships inside the mediapipe wheel, the others are downloaded on first use (needs network)"
        ) from None


def landmarks_to_row(results) -> np.ndarray:
    """One frame of a Holistic result -> [1629] float32 in the data/layout.py order, NaN for undetected parts."""
    row = np.full(RAW_DIM, np.nan, dtype=np.float32)
    for attr, columns, count in _PARTS:
        found = getattr(results, attr, None)
        if found is None:
            continue
        points = found.landmark
        if len(points) < count:
            raise ExtractError(f"MediaPipe returned {len(points)} {attr}, expected {count}")
        row[columns] = np.array([(p.x, p.y, p.z) for p in points[:count]], dtype=np.float32).reshape(count * COORDS)
    return row


def extract_sample(source: Path, model_complexity: int = 1) -> np.ndarray:
    """Landmarks of every frame of a video or frame folder: [T, 1629] float32, NaN where not detected.

    Raises ExtractError for unreadable input and for input with zero decodable frames.
    """
    frames = read_frames(Path(source))
    first = next(frames, None)  # read before starting MediaPipe, so bad input fails fast
    if first is None:
        raise ExtractError(f"{source}: no decodable frames (empty or broken video); re-encode or drop it")
    rows = []
    with new_holistic(model_complexity) as holistic:
        for frame in itertools.chain([first], frames):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # OpenCV decodes BGR, MediaPipe expects RGB
            rgb.flags.writeable = False  # lets MediaPipe wrap the buffer without copying it
            rows.append(landmarks_to_row(holistic.process(rgb)))
    return np.stack(rows)
