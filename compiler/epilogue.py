"""The activations fused into the conv kernels' write-back (one implementation for the dense and sparse kernels).

Why our own approximations: TVM 0.27 lowers `tirx.tanh`, `tirx.sigmoid` and `tirx.exp` through LLVM's
`llvm.exp`, which LLVM scalarises into one libm `expf` call per lane on x86 (AVX-512/AVX2) and aarch64 (NEON):
16 calls per AVX-512 vector in the innermost write-back. `tirx.erf` has no LLVM lowering at all ("unknown
intrinsic"). Everything here is plain vector arithmetic (multiply-add, min/max, floor, one divide, an integer
shift into the exponent), so it vectorises on every target and needs no libm (the Android c-lib links none):

- exp: Cephes `expf` (range reduction x = n ln2 + r in two parts, degree-6 polynomial of r, 2^n built in the
  exponent bits); the input is clamped to [-87.3, 88.3] so 2^n stays a normal float.
- sigmoid(x) = 1 / (1 + exp(-x)): accurate in relative terms on both tails (no 1 - y cancellation).
- tanh: Eigen's odd rational minimax approximation p(x)/q(x) (degree 13 / 6) on [-9, 9], as TVM's `fast_tanh`,
  ONNX Runtime and PyTorch's own fast path; relative error a few ULP, no cancellation near 0.
- erf: Eigen's rational approximation (degree 13 / 8) on [-4, 4], as TVM's `fast_erf`.
- silu = x sigmoid(x); gelu = x/2 (1 + erf(x/sqrt 2)) (PyTorch's default); gelu_tanh = x sigmoid(2 sqrt(2/pi)
  (x + 0.044715 x^3)), the same function as PyTorch's 0.5 x (1 + tanh(...)) without its cancellation for x < 0;
  hardswish = x min(max(x + 3, 0), 6) / 6; leaky_relu = x > 0 ? x : slope x (the slope baked into the code).

Measured max errors against float64 references: tests/test_compiler_epilogue.py (docs/architecture.md lists them).
"""

from __future__ import annotations

import math

from tvm import tirx

from compiler.errors import CompilerError

ACTIVATIONS = ("none", "relu", "prelu", "leaky_relu", "tanh", "sigmoid", "silu", "hardswish", "gelu", "gelu_tanh")
# Cheap enough to apply lane by lane in an overhanging tile's tail (the kernels' code for them predates this module)
LANEWISE = ("none", "relu", "prelu")

# Cephes expf: ln 2 split so that n * LN2_HI is exact for |n| <= 128.
_EXP_LO, _EXP_HI = -87.33654475, 88.3762626647949
_LOG2E, _LN2_HI, _LN2_LO = 1.44269504088896341, 0.693359375, -2.12194440e-4
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
# Eigen's tanh on [-9, 9]: odd numerator in x^2 (alpha_13 .. alpha_1), even denominator (beta_6 .. beta_0).
_TANH_BOUND = 9.0
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
# Eigen's erf on [-4, 4]: numerator alpha_13 .. alpha_1, denominator beta_8 .. beta_0.
_ERF_BOUND = 4.0
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


class _Lanes:
    """Constants and bindings for `lanes`-wide float32 expressions (lanes 1: scalars)."""

    def __init__(self, lanes: int, bind) -> None:
        self.lanes, self.bind = lanes, bind

    def c(self, value: float, dtype: str = "float32"):
        """A constant splat to the vector width."""
        e = tirx.const(value, dtype)
        return tirx.Broadcast(e, self.lanes) if self.lanes > 1 else e

    def dtype(self, scalar: str) -> str:
        return scalar if self.lanes == 1 else f"{scalar}x{self.lanes}"

    def clamp(self, x, lo: float, hi: float):
        return tirx.min(tirx.max(x, self.c(lo)), self.c(hi))

    def horner(self, x, coeffs: tuple[float, ...]):
        """coeffs[0] x^(k-1) + ... + coeffs[-1], by Horner's rule (LLVM contracts each step to one FMA)."""
        p = self.c(coeffs[0])
        for k in coeffs[1:]:
            p = p * x + self.c(k)
        return p

    def exp(self, x):
        """e^x (Cephes expf), x clamped to the range where the result is a normal float."""
        x = self.bind(self.clamp(x, _EXP_LO, _EXP_HI))
        n = self.bind(tirx.floor(x * self.c(_LOG2E) + self.c(0.5)))
        r = self.bind(x - n * self.c(_LN2_HI) - n * self.c(_LN2_LO))
        y = self.horner(r, _EXP_POLY) * (r * r) + r + self.c(1.0)
        biased = tirx.Cast(self.dtype("int32"), n) + self.c(127, "int32")
        scale = tirx.reinterpret(self.dtype("float32"), tirx.shift_left(biased, self.c(23, "int32")))
        return y * scale

    def sigmoid(self, x):
        return self.c(1.0) / (self.c(1.0) + self.exp(self.c(0.0) - x))

    def tanh(self, x):
        x = self.bind(self.clamp(x, -_TANH_BOUND, _TANH_BOUND))
        x2 = self.bind(x * x)
        return x * self.horner(x2, _TANH_P) / self.horner(x2, _TANH_Q)

    def erf(self, x):
        x = self.bind(self.clamp(x, -_ERF_BOUND, _ERF_BOUND))
        x2 = self.bind(x * x)
        return x * self.horner(x2, _ERF_P) / self.horner(x2, _ERF_Q)


def activation(act: str, v, lanes: int, alpha=None, slope: float = 0.0, bind=None):
    """act(v) for `lanes` float32 values (a vector expression, or a scalar when lanes is 1).

    `alpha`: PReLU's per-channel slope (a scalar expression); `slope`: leaky ReLU's constant negative slope.
    `bind(expr) -> var` names a subexpression used more than once (T.Bind inside a kernel), so the expression
    stays a DAG instead of a tree that doubles with every reuse; by default it is the IR builder's T.Bind.
    ReLU and PReLU are the expressions the kernels always had (no bindings).
    """
    if bind is None:
        from tvm.script.ir_builder import tirx as T  # noqa: N812

        bind = T.Bind
    f = _Lanes(lanes, bind)
    if act == "none":
        return v
    if act == "relu":
        return tirx.max(v, f.c(0.0))
    if act == "prelu":
        return tirx.Select(v > f.c(0.0), v, v * (tirx.Broadcast(alpha, lanes) if lanes > 1 else alpha))
    x = bind(v)
    if act == "leaky_relu":
        return tirx.Select(x > f.c(0.0), x, x * f.c(slope))
    if act == "tanh":
        return f.tanh(x)
    if act == "sigmoid":
        return f.sigmoid(x)
    if act == "silu":
        return x * f.sigmoid(x)
    if act == "hardswish":
        return x * f.clamp(x + f.c(3.0), 0.0, 6.0) * f.c(1.0 / 6.0)
    if act == "gelu":
        return f.c(0.5) * x * (f.c(1.0) + f.erf(x * f.c(math.sqrt(0.5))))
    if act == "gelu_tanh":
        u = x * (f.c(1.0) + f.c(0.044715) * x * x)
        return x * f.sigmoid(u * f.c(2.0 * math.sqrt(2.0 / math.pi)))
    raise CompilerError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
