"""The embedded demo corpus: synthetic MediaPipe Holistic landmark sequences of signed sentences.

`generate_corpus(out_dir, ...)` writes a corpus in the format of data/corpus.py: `manifest.csv`
(id, split, glosses, path, signer, fps, plus `segments`, the frame range of each gloss) and one
`features/<id>.npy` a sentence, float32 [T, 1629] raw landmarks in data/layout.py order (pose 33,
left hand 21, right hand 21, face 468; x, y, z consecutive; NaN for all three coordinates of a
landmark MediaPipe would not have detected). `demo_corpus()` generates the default corpus once into
a cache directory and returns it; train.py and the harness use it when no corpus is given.

How a sentence is made (all lengths in "body units", 1 = the signer's shoulder width):
- a body skeleton (33 pose landmarks) placed in the image by a per-signer scale and position, the
  hips near the bottom edge and the legs below the frame, as in upper-body signing videos;
- a 468-point face cloud on a half-ellipsoid with MediaPipe's key indices (face oval, eyes, brows,
  lips, nose tip) at their places, moved by head rotation, mouth opening, brow raise and blinks;
- two 21-joint hands (wrist, four joints a finger) built by forward kinematics from a handshape
  (finger curls, spread, thumb pose) and a palm orientation, attached to the pose wrists; the
  elbows follow by two-bone inverse kinematics;
- each gloss is a wrist trajectory of one or both hands plus handshape and orientation (GLOSSES);
  a sentence strings 2-4 glosses with interpolated transitions, starting and ending at rest, with a
  per-occurrence time warp, size and place jitter, and per-signer body, placement and style;
- sensor jitter on every landmark, and hands that drop out in runs of frames (a two-state Markov
  chain whose loss rate rises when the hand is low/at rest, out of frame, far out or fast), with
  rates calibrated against the Kaggle ASL Signs landmarks in shared/data (see MEASURED_KAGGLE_MISSING).

Coordinates follow MediaPipe: x, y normalised to the image (0..1, y down); pose z relative to the
hip midpoint (MediaPipe's exaggerated pose depth, about 5x metric, as in the Kaggle data); hand z
relative to the wrist; face z relative to the face, both in units of image width.

Everything is a pure function of the seed and the size parameters: the same call writes the same
bytes. Run `python -m data.synthetic --out DIR [--seed S] [--size small|default|N]`.

The parts: skeleton.py (body frame, hands, face mesh), glosses.py (the vocabulary's motions),
signers.py, render.py (a sentence to landmarks), dropout.py (undetected hands and face),
corpus.py (the corpus plan, generate_corpus, the cached demo corpus and its lock), __main__.py
(the command).
"""
from __future__ import annotations

from data.synthetic.corpus import (
    DEMO_DIR_NAME,
    DEMO_META,
    GENERATOR_VERSION,
    SIZES,
    default_cache_root,
    demo_corpus,
    generate_corpus,
)
from data.synthetic.dropout import MEASURED_KAGGLE_MISSING, missing_fractions
from data.synthetic.glosses import GLOSSES, gloss_motion
from data.synthetic.render import FPS, render_sentence
from data.synthetic.signers import Signer, make_signers
from data.synthetic.skeleton import READY, REST, face_template, hand_points

__all__ = [
    "DEMO_DIR_NAME", "DEMO_META", "FPS", "GENERATOR_VERSION", "GLOSSES", "MEASURED_KAGGLE_MISSING", "READY", "REST", "SIZES",
    "Signer", "default_cache_root", "demo_corpus", "face_template", "generate_corpus", "gloss_motion", "hand_points",
    "make_signers", "missing_fractions", "render_sentence",
]
