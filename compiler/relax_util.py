"""Small readers of Relax expressions shared by the graph passes (canonicalize, rewrite)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The static shape of a float32 tensor expression, else None (dynamic, other dtype, not a tensor)."""
    sinfo = expr.ty
    if not isinstance(sinfo, relax.TensorType) or sinfo.shape is None or str(sinfo.dtype) != "float32":
        return None
    try:
        return tuple(int(d) for d in sinfo.shape.values)
    except (TypeError, AttributeError):
        return None


def const_value(expr: relax.Expr) -> np.ndarray | None:
    """The value of a Relax constant as numpy, else None."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def op_name(call: relax.Expr) -> str:
    """'relax.nn.conv2d' for a call of that operator, '' for anything else."""
    if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op):
        return call.op.name
    return ""
