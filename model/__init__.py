"""CSLR models, CTC loss, decoders and WER. `create_model("i3d_teacher", **I3DConfig fields)` builds the teacher."""
from model.i3d import I3DConfig, I3DTeacher
from model.registry import create_model, model_from_checkpoint_args, register_model

__all__ = ["I3DConfig", "I3DTeacher", "create_model", "model_from_checkpoint_args", "register_model"]
