"""One layer configuration: the unit the latency table times and the predictor sums.

Why these fields: a layer's time on a target is fixed by the code the compiler emits for it, and
`compiler.rewrite` emits one kernel per conv chain (conv + bias + activation + residual add) whose
code depends on exactly (cin, cout, kernel, groups, padding, input size, bias, act, residual) -> a
`ConvSpec`. Ops the rewrite leaves to TVM's default lowering are their own kinds: `adapter` (the
channel pad/slice of a skip across a width change) and `tail` (tail conv + fixed bicubic skip +
PixelShuffle, timed as the one subgraph it is). Pruning fields (scheme, ratio, block) are part of
the key from the start so that sparse kernels get their own entries; `dense` has ratio 0. `precision` is the
arithmetic of the layer's kernel (fp32; int8 = the int8 kernels of compiler/int8; fp16 = the arm64 fp16 kernels):
the same layer in another precision is other code with another time, so it is its own entry (keys of fp32
entries carry no precision, so tables written before the field stay valid).
Target and threads are the table's (one table per target and thread count), not each entry's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from compiler.errors import CompilerError

if TYPE_CHECKING:
    from compiler.targets import TargetSpec

OPS = ("conv", "adapter", "tail")
SCHEMES = ("dense", "block", "pattern", "unstructured")
ACTS = ("none", "relu", "prelu")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class LayerConfig:
    """A layer as the compiler sees it; `h`, `w` are the layer's input height and width."""

    op: str
    cin: int
    cout: int
    h: int
    w: int
    k: int = 3
    groups: int = 1
    pad: int = 1
    bias: bool = True
    act: str = "none"
    residual: bool = False
    scale: int = 0  # tail only: the PixelShuffle factor
    scheme: str = "dense"
    ratio: float = 0.0
    block: tuple[int, int] = (0, 0)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise CompilerError(f"layer op must be one of {', '.join(OPS)}, got {self.op!r}")
        for name in ("cin", "cout", "h", "w", "k", "groups"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CompilerError(f"layer {name} must be a positive integer, got {v!r}")
        if self.act not in ACTS:
            raise CompilerError(f"layer act must be one of {', '.join(ACTS)}, got {self.act!r}")
        if self.scheme not in SCHEMES:
            raise CompilerError(f"layer scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.precision not in PRECISIONS:
            raise CompilerError(f"layer precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 <= float(self.ratio) < 1.0 or (self.scheme == "dense" and self.ratio != 0.0):
            raise CompilerError(f"layer ratio must be in [0, 1) (0 for dense), got {self.ratio!r}")
        object.__setattr__(self, "ratio", round(float(self.ratio), 4))
        object.__setattr__(self, "block", tuple(int(b) for b in self.block))
        if self.cin % self.groups or self.cout % self.groups:
            raise CompilerError(f"layer channels {self.cin}->{self.cout} do not split into {self.groups} groups")
        if self.op == "tail" and self.scale < 1:
            raise CompilerError("a tail layer needs its scale")

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width (stride 1)."""
        if self.op != "conv":
            return self.h, self.w
        return self.h + 2 * self.pad - self.k + 1, self.w + 2 * self.pad - self.k + 1

    def macs(self) -> int:
        """Multiply-accumulates (dense; a pruned layer's kept fraction is 1 - ratio)."""
        if self.op == "adapter":
            return 0
        oh, ow = self.out_hw
        return int(oh * ow * self.cout * (self.cin // self.groups) * self.k * self.k * (1.0 - self.ratio))

    def elements(self) -> int:
        """Floats read and written (input, output and residual tensors): the memory-traffic feature."""
        oh, ow = self.out_hw
        return self.cin * self.h * self.w + self.cout * oh * ow * (2 if self.residual else 1)

    def key(self) -> str:
        """A stable, readable string that names this configuration in the table."""
        s = (f"{self.op}:{self.cin}>{self.cout}@{self.h}x{self.w}:k{self.k}g{self.groups}p{self.pad}"
             f":b{int(self.bias)}:{self.act}:r{int(self.residual)}")
        if self.op == "tail":
            s += f":s{self.scale}"
        if self.scheme != "dense":
            s += f":{self.scheme}{self.ratio:.4f}/{self.block[0]}x{self.block[1]}"
        if self.precision != "fp32":
            s += f":{self.precision}"
        return s

    def family(self) -> tuple:
        """Configurations whose time follows one smooth law in (MACs, memory): the regressor's groups."""
        depthwise = self.groups > 1 and self.groups == self.cin
        return (self.op, self.k, depthwise, self.act != "none", self.residual, self.scheme, self.scale, self.precision)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        d = asdict(self)
        d["block"] = list(self.block)
        if self.precision == "fp32":
            del d["precision"]  # fp32 entries read and write as before the field existed
        return d

    @classmethod
    def from_dict(cls, data: Any) -> LayerConfig:
        """Parse plain data; unknown or missing fields raise CompilerError."""
        if not isinstance(data, dict):
            raise CompilerError(f"a layer configuration must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise CompilerError(f"layer configuration: unknown field {unknown[0]!r}")
        try:
            return cls(**{k: (tuple(v) if k == "block" else v) for k, v in data.items()})
        except TypeError as exc:
            raise CompilerError(f"layer configuration: {exc}") from None


def layer_precision(cfg: LayerConfig, target: TargetSpec | None) -> str:
    """The arithmetic of the layer's kernel: the layer's own precision (int8/fp16 layers of a mixed or quantised
    model), else the target's (every kernel of an android-arm64-fp16 build computes in fp16)."""
    return cfg.precision if cfg.precision != "fp32" or target is None else target.precision
