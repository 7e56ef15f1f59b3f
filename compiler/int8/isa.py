"""The four int8 dot-product forms of the int8 conv template, chosen from the target's CPU features.

Every form computes the same thing per int32 lane i (a pixel) of an accumulator: acc[i] += sum_k x_k[i] * w[k] over
4 consecutive input channels k. That is exactly what the two int8 dot instructions do when the 4 channels are
interleaved pixel by pixel, so the template is one and only the innermost multiply-add (and how many channels the
window interleaves per pixel: `interleave`) differs:

- `vnni` (x86 AVX-512 VNNI): `vpdpbusd` zmm, u8 x s8 -> s32, 16 lanes: uint8 activations and int8 weights as they are.
- `avx2` (x86 without VNNI): `vpdpbusd` is absent and `vpmaddubsw` is not safe (it adds two u8 x s8 products into a
  *saturating* int16: 2 * 255 * 127 = 64770 > 32767), so the window interleaves channel pairs, the bytes are
  zero-extended to int16 (`vpmovzxbw`) and `vpmaddwd` multiplies them with the pair's int16 weights and adds the
  two products into int32 (exact: no int16 sum), 8 pixels x 2 channels per ymm instruction, a quarter of VNNI's.
- `sdot` (aarch64 +dotprod): `sdot v.4s, v.16b, v.16b`, s8 x s8 -> s32. Activations are stored shifted,
  q - 128 (an xor of the top bit), and the shift is folded into the bias: sum (q - z) w = sum (q - 128) w +
  (128 - z) sum w (`shift`).
- `neon` (aarch64 without dotprod): each channel's bytes widened to int16, `smlal` by lane (int16 x int16 + int32,
  4 pixels; a column's 4 int16 weights are one vector load).

Selection: on x86 from LLVM's feature list of the target's CPU (`avx512vnni`); on aarch64 from the target's
explicit `mattr` (`+dotprod`), because LLVM's cortex-a76 implies dotprod while android-arm64 promises only NEON:
the `neon` form's kernels are built with `-dotprod` so that no sdot reaches a CPU without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tvm import tirx

from compiler.errors import CompilerError
from compiler.targets import TargetSpec

ISA_NAMES = ("vnni", "avx2", "sdot", "neon")
# The instruction whose presence the disassembly of each form must show (tests/test_int8_kernels.py).
INSTRUCTION = {"vnni": "vpdpbusd", "avx2": "vpmaddwd", "sdot": "sdot", "neon": "smlal"}


@dataclass(frozen=True)
class Int8Isa:
    """One dot-product form: `vec` int32 lanes per accumulator register, `registers` vector registers."""

    name: str
    vec: int
    registers: int
    shift: int  # activations are stored as q - shift (128 for sdot's signed bytes)

    @property
    def interleave(self) -> int:
        """Channels stored interleaved per pixel in the window: 4 for the dot instructions (their operand), 2 for
        AVX2 (the int16 pairs of vpmaddwd), 1 for NEON (each channel's row apart: smlal's lanes are pixels)."""
        return {"vnni": 4, "sdot": 4, "avx2": 2}.get(self.name, 1)

    @property
    def words(self) -> int:
        """Elements of packed weight per (column, output channel): 4 // interleave int32 words of `interleave` int8 /
        int16 values (vnni, sdot, avx2), or 4 int16 (neon: one vector load, smlal by lane)."""
        return 4 // self.interleave

    @property
    def weight_dtype(self) -> str:
        """The packed weight array's element type."""
        return "int16" if self.interleave == 1 else "int32"

    def inputs(self, loads: list) -> list:
        """What the multiply-adds read from the words loads of uint8 x (interleave * vec) (one per word)."""
        v = self.vec
        if self.interleave == 4:
            return [tirx.reinterpret(f"int8x{4 * v}", loads[0])]
        if self.interleave == 2:  # zero-extended bytes: (channel k, channel k + 1) int16 pairs per pixel
            return [tirx.Cast(f"int16x{2 * v}", x) for x in loads]
        return [tirx.Cast(f"int32x{v}", tirx.Cast(f"int16x{v}", x)) for x in loads]

    def mac(self, acc, inputs: list, weight, base):
        """acc + dot(inputs, weights at weight[base : base + words]) for `vec` int32 lanes (acc None: from zero)."""
        v = self.vec
        if self.interleave == 4:
            w = tirx.reinterpret(f"int8x{4 * v}", tirx.Broadcast(tirx.BufferLoad(weight, [base]), v))
            start = acc if acc is not None else tirx.Broadcast(tirx.const(0, "int32"), v)
            name = "llvm.x86.avx512.vpdpbusd.512" if self.name == "vnni" else "llvm.aarch64.neon.sdot.v4i32.v16i8"
            return tirx.call_llvm_pure_intrin(f"int32x{v}", name, start, inputs[0], w)
        for k, x in enumerate(inputs):
            if self.interleave == 2:
                w = tirx.reinterpret(f"int16x{2 * v}", tirx.Broadcast(tirx.BufferLoad(weight, [base + k]), v))
                prod = tirx.call_llvm_pure_intrin(f"int32x{v}", "llvm.x86.avx2.pmadd.wd", x, w)
            else:  # one int16 x 4 load per column and channel (an immediate offset: ld1r has none), lane k splat
                wv = tirx.BufferLoad(weight, [tirx.Ramp(base, 1, 4)])
                prod = x * tirx.Cast(f"int32x{v}", tirx.Shuffle([wv], [k] * v))
            acc = prod if acc is None else acc + prod
        return acc


def target_features(target: TargetSpec) -> set[str]:
    """LLVM's feature names enabled for the target's CPU plus its explicit mattr (e.g. 'avx512vnni', 'dotprod')."""
    from tvm.target import codegen

    attrs = [str(a) for a in target.tvm.get("mattr", [])]
    feats: set[str] = set()
    if not target.triple.startswith(("aarch64", "arm64")):
        try:
            got = codegen.llvm_get_cpu_features(target.tvm_target())
            feats = ({str(k) for k, v in dict(got).items() if bool(v)} if hasattr(got, "items")
                     else {str(f) for f in got})
        except Exception as exc:  # noqa: BLE001
            raise CompilerError(f"cannot read the CPU features of target {target.name}: {exc}") from exc
    feats |= {a[1:] for a in attrs if a.startswith("+")}
    return feats - {a[1:] for a in attrs if a.startswith("-")}


def choose_isa(target: TargetSpec) -> Int8Isa:
    """The int8 form the target's features allow (see the module docstring)."""
    feats = target_features(target)
    if target.triple.startswith(("aarch64", "arm64")):
        return Int8Isa("sdot", 4, 32, 128) if "dotprod" in feats else Int8Isa("neon", 4, 32, 0)
    if "avx512vnni" in feats and "avx512bw" in feats:
        return Int8Isa("vnni", 16, 32, 0)
    if "avx2" in feats:
        return Int8Isa("avx2", 8, 16, 0)
    raise CompilerError(f"target {target.name} has neither AVX-512 VNNI nor AVX2: no int8 kernels for it")


# The CPU features each form's code needs (compiler.targets.CPU_FEATURES names): what the c-lib checks at load.
REQUIRED_FEATURES = {"vnni": ("avx512f", "avx512vnni"), "avx2": ("avx2",), "sdot": ("dotprod",), "neon": ()}


def kernel_target(target: TargetSpec, isa: Int8Isa) -> TargetSpec:
    """The target the int8 kernels are built for: requiring exactly the form's CPU features, and the `neon` form on
    aarch64 explicitly without dotprod."""
    target = dataclasses.replace(target, features=REQUIRED_FEATURES[isa.name])
    if isa.name != "neon":
        return target
    attrs = [a for a in target.tvm.get("mattr", []) if a != "+dotprod"]
    return dataclasses.replace(target, tvm={**target.tvm, "mattr": [*attrs, "-dotprod"]})


def precision_unsupported(target: TargetSpec, precision: str) -> str | None:
    """Why `target` cannot run layers in `precision` ("fp32" | "fp16" | "int8"), or None when it can.

    Why here, beside choose_isa: a search that picks int8 or fp16 layers must learn before any work that the
    target has no kernels for them. int8 follows the int8 kernels' own choice (choose_isa: VNNI or AVX2 on x86;
    sdot or the NEON fallback on every aarch64 target); fp16 needs a target whose code computes in fp16.
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        if target.precision == "fp16":
            return None
        return (f"target {target.name} computes in {target.precision}, not fp16 (fp16 layers: "
                f"android-arm64-fp16)")
    if precision == "int8":
        try:
            choose_isa(target)
        except CompilerError as e:
            return str(e)
        return None
    return f"unknown precision {precision!r} (known: fp32, fp16, int8)"
