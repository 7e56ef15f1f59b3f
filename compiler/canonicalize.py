"""Relax pass run before the conv rewrite: put the graph in the forms our kernels cover.

Two patterns that torch.export produces for SR networks would otherwise fall to TVM's default lowering,
which for a convolution means naive loops (FSRCNN's 9x9 deconvolution alone takes ~10 s a frame):

- a transposed convolution (stride s) becomes a stride-1 convolution on the low-resolution input with
  s*s times the output channels, followed by PixelShuffle (the sub-pixel identity of Shi et al., 2016):
  each output phase (y mod s, x mod s) is a small ordinary convolution whose taps are the deconvolution
  taps of that phase. Our conv kernel then runs it, and PixelShuffle is a cheap copy.
- PReLU, which torch.export decomposes to `where(x > 0, x, alpha * x)`, becomes `nn.prelu` again so the
  rewrite can fuse it into the convolution before it.
- replicate padding (`take` of clipped indices) uses take's "clip" mode instead of "fast", which TVM warns
  about on every compile although the indices are in bounds.

Anything that does not match exactly (groups, dilation, dynamic shapes, non-constant weights) is left
as it was, so the pass never changes what the model computes.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from compiler.relax_util import const_value, op_name, static_shape


def phase_taps(k: int, s: int, p: int) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """Per output phase r (output index y = s*Y + r), the (offset j, deconv tap t) pairs with out[y] += x[Y+j]*w[t].

    From out[y] = sum_i x[i] * w[y + p - s*i]: with i = Y + j, t = r + p - s*j must lie in [0, k).
    Returns (j_min, j_max, taps) over all phases.
    """
    taps = []
    for r in range(s):
        taps.append([(j, r + p - s * j) for j in range(math.ceil((r + p - k + 1) / s), (r + p) // s + 1)])
    js = [j for phase in taps for j, _ in phase]
    return min(js), max(js), taps


def subpixel_weight(weight: np.ndarray, strides: tuple[int, int], padding: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """ConvTranspose weight [Cin, Cout, kh, kw] -> conv weight [Cout*sy*sx, Cin, KH, KW] and its first offsets (jy0, jx0).

    Output channel co*sy*sx + ry*sx + rx holds phase (ry, rx) of channel co, the order PixelShuffle reads.
    """
    cin, cout, kh, kw = weight.shape
    (sy, sx), (py, px) = strides, padding
    jy0, jy1, ty = phase_taps(kh, sy, py)
    jx0, jx1, tx = phase_taps(kw, sx, px)
    out = np.zeros((cout, sy, sx, cin, jy1 - jy0 + 1, jx1 - jx0 + 1), dtype=np.float32)
    for ry in range(sy):
        for jy, tyy in ty[ry]:
            for rx in range(sx):
                for jx, txx in tx[rx]:
                    out[:, ry, rx, :, jy - jy0, jx - jx0] = weight[:, :, tyy, txx].T
    return out.reshape(cout * sy * sx, cin, jy1 - jy0 + 1, jx1 - jx0 + 1), (jy0, jx0)


@mutator
class _Canonicalizer(PyExprMutator):
    """Rewrites the two patterns of the module docstring binding by binding."""

    def __init__(self, mod: tvm.IRModule, values: dict[relax.Var, relax.Expr]) -> None:
        super().__init__(mod)
        self.values = values
        self.rewritten = 0

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:  # noqa: D102
        new = None
        name = op_name(binding.value)
        if name == "relax.nn.conv2d_transpose":
            new = self._deconv(binding.value, static_shape(binding.var))
        elif name == "relax.where":
            new = self._prelu(binding.value)
        elif name == "relax.take":
            new = self._clipped_take(binding.value)
        if new is None:
            super().visit_var_binding_(binding)
            return
        self.rewritten += 1
        self.set_var_remap(binding.var, self.builder_.emit(new, name_hint=binding.var.name))

    def _prelu(self, call: relax.Call) -> relax.Expr | None:
        cond, x, neg = call.args
        cond_v, neg_v = self.values.get(cond), self.values.get(neg)
        if op_name(cond_v) != "relax.greater" or not cond_v.args[0].same_as(x):
            return None
        zero = const_value(cond_v.args[1])
        if zero is None or zero.size != 1 or float(zero.reshape(-1)[0]) != 0.0 or op_name(neg_v) != "relax.multiply":
            return None
        a, b = neg_v.args
        alpha = const_value(a) if b.same_as(x) else const_value(b) if a.same_as(x) else None
        shape = static_shape(x)
        if alpha is None or shape is None or len(shape) != 4:
            return None
        channels = shape[1]
        if alpha.size == 1:
            alpha = np.full(channels, float(alpha.reshape(-1)[0]), np.float32)
        elif alpha.shape in ((1, channels, 1, 1), (channels, 1, 1)):
            alpha = alpha.reshape(channels).astype(np.float32)
        else:
            return None
        return relax.op.nn.prelu(self.visit_expr(x), relax.const(alpha), axis=1)

    def _clipped_take(self, call: relax.Call) -> relax.Expr | None:
        """take(x, i, mode="fast") with i in bounds (replicate padding: constant or clipped indices) -> mode "clip":
        the same values, and TVM stops warning on every compile that fast mode segfaults out of bounds."""
        if str(call.attrs.mode) != "fast":
            return None
        axis, shape, idx = call.attrs.axis, static_shape(call.args[0]), const_value(call.args[1])
        if idx is not None and shape is not None and axis is not None:  # constants folded: check the bounds
            if idx.size == 0 or idx.min() < 0 or idx.max() >= shape[int(axis)]:
                return None
        elif op_name(self.values.get(call.args[1])) != "relax.clip":
            return None
        return relax.op.take(self.visit_expr(call.args[0]), self.visit_expr(call.args[1]),
                             None if axis is None else int(axis), mode="clip")

    def _deconv(self, call: relax.Call, out_shape: tuple[int, ...] | None) -> relax.Expr | None:
        attrs, data = call.attrs, call.args[0]
        weight, in_shape = const_value(call.args[1]), static_shape(data)
        if weight is None or in_shape is None or out_shape is None or len(in_shape) != 4 or weight.ndim != 4:
            return None
        if int(attrs.groups) != 1 or [int(d) for d in attrs.dilation] != [1, 1]:
            return None
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "IOHW" or attrs.out_layout != "NCHW":
            return None
        sy, sx = (int(s) for s in attrs.strides)
        pad = [int(p) for p in attrs.padding]
        pt, pl = pad[0], pad[1]
        w2, (jy0, jx0) = subpixel_weight(weight.astype(np.float32), (sy, sx), (pt, pl))
        n, _, h, w = in_shape
        cout, ho, wo = out_shape[1], out_shape[2], out_shape[3]
        yn, xn = -(-ho // sy), -(-wo // sx)
        kh, kw = w2.shape[2:]
        top, left = -jy0, -jx0
        bottom, right = yn + jy0 + kh - 1 - h, xn + jx0 + kw - 1 - w
        if min(top, left, bottom, right) < 0:
            return None  # would need a crop of the input; rare, left to the default lowering
        y = relax.op.nn.conv2d(self.visit_expr(data), relax.const(w2), padding=[top, left, bottom, right],
                                out_dtype="float32")
        y = relax.op.reshape(y, [n, cout, sy, sx, yn, xn])
        y = relax.op.permute_dims(y, [0, 1, 4, 2, 5, 3])
        y = relax.op.reshape(y, [n, cout, yn * sy, xn * sx])
        if yn * sy != ho or xn * sx != wo:
            y = relax.op.strided_slice(y, axes=[2, 3], begin=[0, 0], end=[ho, wo])
        return y


def _rewrite_once(mod: tvm.IRModule, func_name: str) -> tuple[tvm.IRModule, int]:
    func = mod[func_name]
    values = {b.var: b.value for block in func.body.blocks for b in block.bindings
              if isinstance(b, relax.VarBinding)}
    rewriter = _Canonicalizer(mod, values)
    new_func = rewriter.visit_expr(func)
    if not rewriter.rewritten:
        return mod, 0
    new_mod = rewriter.builder_.get()
    new_mod[func_name] = new_func
    return relax.transform.DeadCodeElimination([func_name])(new_mod), rewriter.rewritten


def canonicalize(mod: tvm.IRModule, func_name: str = "main") -> tuple[tvm.IRModule, int]:
    """Apply the rewrites to `mod[func_name]`; returns (module, bindings rewritten).

    Two rounds: before constant folding (FoldConstant itself would trip TVM's warning on "fast" takes) and
    after it (the PReLU slopes and deconvolution weights are constants only then).
    """
    mod, first = _rewrite_once(mod, func_name)
    mod, second = _rewrite_once(relax.transform.FoldConstant()(mod), func_name)
    return relax.transform.FoldConstant()(mod), first + second
