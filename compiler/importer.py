"""torch nn.Module -> TVM Relax IRModule (torch.export + the Relax frontend), weights as constants."""

from __future__ import annotations

import warnings

import torch
import tvm
from torch import nn

from compiler.errors import CompilerError


def check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Validate an NCHW input shape (positive ints) and return it as a tuple."""
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise CompilerError(f"input shape must be 4 positive integers (N, C, H, W), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def import_module(model: nn.Module, input_shape: tuple[int, int, int, int]) -> tvm.IRModule:
    """Export `model` in eval mode for one fixed NCHW float32 input shape and translate it to Relax.

    Weights become constants (not inputs) so the compiler can pre-pack them; the single output is
    returned unwrapped from the frontend's tuple.
    """
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    if not isinstance(model, nn.Module):
        raise CompilerError(f"expected a torch nn.Module, got {type(model).__name__}")
    shape = check_shape(input_shape)
    was_training = model.training
    model.eval()
    try:
        example = torch.zeros(shape, dtype=torch.float32)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model, (example,))
            mod = from_exported_program(exported, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    except CompilerError:
        raise
    except Exception as exc:  # noqa: BLE001  (torch.export/frontend failures are the user's model)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompilerError(f"cannot import the model into TVM: {first}") from exc
    finally:
        model.train(was_training)
    out = mod["main"].ret_ty
    if not isinstance(out, relax.TensorType):
        raise CompilerError("the model must return one tensor")
    return mod
