"""Reference SR models by name, the model file format, and model specs on the CLI.

Importing the package registers the reference architectures: bicubic, fsrcnn, espcn, ecbsr.
"""

from __future__ import annotations

from srprune.models.registry import build_model, deploy, is_registered, list_models, model_defaults, register
from srprune.models import bicubic as _bicubic  # noqa: F401  (registers "bicubic")
from srprune.models import ecbsr as _ecbsr  # noqa: F401  (registers "ecbsr")
from srprune.models import espcn as _espcn  # noqa: F401  (registers "espcn")
from srprune.models import fsrcnn as _fsrcnn  # noqa: F401  (registers "fsrcnn")
from srprune.models import genome as _genome  # noqa: F401  (registers "genome", searched networks)
from srprune.models.modelfile import load_model, read_model_file, save_model
from srprune.models.resolve import ModelInfo, resolve_model

__all__ = [
    "ModelInfo", "build_model", "deploy", "is_registered", "list_models", "load_model", "model_defaults",
    "read_model_file", "register", "resolve_model", "save_model",
]

# The compacted architecture that channel pruning produces (srprune.pruning): registered here so that every
# load_model() user can read pruned model files.
from srprune.models import channel_pruned as _channel_pruned  # noqa: E402,F401
# The int8 architecture that `srprune quantize` produces (srprune.quant), for the same reason.
from srprune.quant import qmodel as _qmodel  # noqa: E402,F401
# A user's own network converted from ONNX or .pt2 (srprune.models.foreign), so its pruned copies load too.
from srprune.models import graphnet as _graphnet  # noqa: E402,F401
