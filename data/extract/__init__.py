"""Videos / frame folders -> a corpus of MediaPipe Holistic landmarks ([T, 1629] float32 a sample).

    python -m data.extract INPUT... --out CORPUS [--split train] [--labels FILE] [--workers N]
                           [--model-complexity 1] [--shard K/N]
    python -m data.extract --merge SHARD_DIR... --out CORPUS

Inputs
    A video file is one sample (id = file stem). A directory is searched recursively: every
    video in it is one sample, and every folder whose files are images is ONE sample (its frames
    in natural order, 'img2.png' before 'img10.png'; id = folder name). PHOENIX-2014 keeps a
    sentence's frames in `<sentence>/1/`; a folder named only by digits therefore takes its
    parent's name as id. Two inputs with the same id are an error naming both paths.

Landmarks
    One new `mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity,
    refine_face_landmarks=False)` a sample, so tracking state never leaks from one sample into
    the next. Each frame becomes a row in the layout of data/layout.py (pose 33 | left hand 21 |
    right hand 21 | face 468, x y z consecutive), NaN for every coordinate of a part MediaPipe
    did not find in that frame. Hands keep MediaPipe's labels, nothing is swapped:
    `left_hand_landmarks` (the hand Holistic finds at the pose's left wrist, landmark 15) goes
    to the left-hand block. For an unmirrored recording that is the signer's own left hand; a
    mirrored (selfie-style) recording has its labels mirrored too.

Corpus
    Features go to CORPUS/features/<id>.npy (atomic writes); manifest rows are merged into
    CORPUS/manifest.csv as samples finish (every few samples and at the end), so an interrupted
    run keeps its work. A re-run skips every sample that is in the manifest and whose feature
    file exists; a re-run with --labels updates glosses/split/signer of those rows without
    extracting again. fps comes from the video container; it stays empty for image folders.

Labels
    --labels FILE: CSV, TSV or '|'-separated, columns id (the sample id: file stem or folder
    name), glosses (space-separated), split and signer optional. The PHOENIX corpus files are
    read as they are (id|folder|signer|annotation and name|video|...|speaker|orth|...).
    Without labels the glosses column stays EMPTY (an id is not a gloss) and a warning says the
    corpus needs labels before training; the harness reports empty glosses as a failure.

Messages
    MediaPipe's native INFO/WARNING log lines (absl and TFLite, a dozen a sample) are filtered off
    stderr, in this process and in the worker processes; every other line written there (native
    errors, OpenCV's complaints, Python's) is kept and prefixed with the path of the sample being
    extracted. CSLR_MEDIAPIPE_LOGS=1 shows MediaPipe's log unfiltered.

Sharding
    --shard K/N (K = 1..N) keeps the samples whose id hashes (SHA-1, stable across runs and
    machines) to shard K. Give every shard its own --out (one manifest has one writer), then
    combine them with --merge.

Modules
    holistic.py (frames in, MediaPipe Holistic landmark rows out), quiet.py (the native-log
    filter), jobs.py (discovery, labels, sharding), pool.py (extraction into a corpus, worker
    processes), merge.py (shard corpora into one), __main__.py (the command line).
"""
from __future__ import annotations

from data.extract.holistic import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ExtractError,
    extract_sample,
    image_files,
    landmarks_to_row,
    natural_key,
    new_holistic,
    read_frames,
    video_fps,
)
from data.extract.jobs import ExtractJob, discover_jobs, read_labels, shard, shard_of
from data.extract.merge import merge_corpora
from data.extract.pool import ExtractSummary, extract_to_corpus
from data.extract.quiet import NATIVE_NOISE, SHOW_NATIVE_LOGS_ENV, filter_native_logs_of_this_process, native_noise, quiet_native_logs

__all__ = [
    "IMAGE_SUFFIXES", "NATIVE_NOISE", "SHOW_NATIVE_LOGS_ENV", "VIDEO_SUFFIXES", "ExtractError", "ExtractJob", "ExtractSummary",
    "discover_jobs", "extract_sample", "extract_to_corpus", "filter_native_logs_of_this_process", "image_files", "landmarks_to_row",
    "merge_corpora", "native_noise", "natural_key", "new_holistic", "quiet_native_logs", "read_frames", "read_labels", "shard",
    "shard_of", "video_fps",
]
