"""A deployed SR model as the list of conv layers the int8 contract runs (the plan), and a float executor of it.

Why a plan and not torch.fx: the residual adds of searched cells change width (`skip_add` slices or zero-pads
channels), which fx cannot trace, and the contract fuses conv -> activation -> residual into one layer anyway.
Every quantisable architecture has the same shape: head -> cells -> tail (float32 out) + a fixed global skip ->
PixelShuffle. `build_plan` reads it off the module types (ECBSR, ESPCN, GenomeNet and their channel-pruned
forms, which keep the classes; and compiler.bench.PlainSR, the benchmarks' plain-c32-d6, whose skip is a feature
residual over the body and which has no global skip); anything else is refused with one line.

`PlanNet` runs the plan in float32 in three modes: plain (must equal the model's own forward: the test of the
plan), calibration (observers record every uint8 tensor) and fake quantisation (QAT: int8 weights and uint8
activations simulated with straight-through estimators). Tensor 0 is the input image; layer i writes tensor i+1.

The plan's layers are also exactly the layers that may take another precision than fp32 (`precision_layers`:
the search's per-layer precision choice reads it here, one home for that rule). A mixed network (`precisions`
per layer name) simulates each int8 layer as the int8 contract computes it (int8 weights; every tensor it reads
quantised to uint8 with its calibrated range, so a producing fp32 layer requantises in its epilogue) and each
fp16 layer with fp16 weights and inputs (the fp16 kernels' accumulation in fp16 is not simulated); fp32 layers
and the tensors only they read stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from srprune.errors import InputError
from srprune.quant.ranges import RangeObserver

SKIPS = ("none", "repeat", "bicubic")
LAYER_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class PlanLayer:
    """One conv of the deployed model with its fused epilogue (activation, then an optional residual)."""

    name: str  # module name in the deployed model
    conv: nn.Conv2d
    act: str  # none | relu | prelu | tanh
    act_module: nn.Module | None
    src: int  # tensor id of the input
    residual: int | None = None  # tensor id added after the activation (sliced / zero-padded to the width)
    tail: bool = False  # the last conv: writes float32 before PixelShuffle and the global skip


@dataclass
class Plan:
    """The layers in execution order and the global skip ("repeat": ECBSR's nearest, "bicubic": GenomeNet's)."""

    layers: list[PlanLayer]
    skip: str
    skip_weight: torch.Tensor | None
    scale: int


def _act_name(mod: nn.Module | None, where: str) -> str:
    if mod is None or isinstance(mod, nn.Identity):
        return "none"
    if isinstance(mod, nn.ReLU):
        return "relu"
    if isinstance(mod, nn.PReLU):
        return "prelu"
    if isinstance(mod, nn.Tanh):
        return "tanh"
    raise InputError(f"{where}: activation {type(mod).__name__} has no int8 form (relu, prelu, tanh, none)")


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    mod = model.get_submodule(name)
    if (not isinstance(mod, nn.Conv2d) or mod.stride != (1, 1) or mod.dilation != (1, 1)
            or mod.kernel_size[0] != mod.kernel_size[1] or mod.padding != (mod.kernel_size[0] // 2,) * 2
            or mod.padding_mode != "zeros"):
        raise InputError(f"layer {name}: only stride-1 'same' convs with zero padding are quantised to int8")
    return mod


class _Builder:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.layers = model, []

    def add(self, name: str, act: str | nn.Module | None, src: int, residual: int | None = None,
            act_name: str | None = None) -> int:
        mod = act if isinstance(act, nn.Module) else None
        kind = _act_name(mod, name) if act_name is None else act_name
        self.layers.append(PlanLayer(name, _conv(self.model, name), kind, mod, src, residual))
        return len(self.layers)  # the id of the tensor it writes


def build_plan(model: nn.Module) -> Plan:
    """The plan of a deployed model (call `srprune.models.deploy` first); InputError for what int8 cannot run."""
    from compiler.bench import PlainSR
    from srprune.models.ecbsr import ECB, ECBSR
    from srprune.models.espcn import ESPCN
    from supernet.standalone import GenomeNet, PlainBlock

    b = _Builder(model)
    scale = int(getattr(model, "scale", 0))
    label = (getattr(model, "arch", None) or {}).get("name", type(model).__name__)
    if isinstance(model, ECBSR):
        if any(isinstance(m, ECB) for m in model.body):
            raise InputError(f"{label}: quantise the deployed form (srprune.models.deploy)")
        t = 0
        for i, layer in enumerate(model.body):
            t = b.add(f"body.{i}.conv", layer.act, t)
        skip, weight = "repeat", None
    elif isinstance(model, ESPCN):
        mods = list(model.body)
        t = 0
        for i, mod in enumerate(mods):
            if isinstance(mod, nn.Conv2d):
                nxt = mods[i + 1] if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Conv2d) else None
                t = b.add(f"body.{i}", nxt, t)
        skip, weight = "none", None
    elif isinstance(model, GenomeNet):
        t = b.add("head", None, 0)
        for i, cell in enumerate(model.cells):
            if isinstance(cell, nn.Identity):
                continue
            if not isinstance(cell, PlainBlock):
                raise InputError(f"{label}: cell {i} ({type(cell).__name__}) has no int8 form")
            p, x = f"cells.{i}", t
            if cell.block == "plain":
                t = b.add(f"{p}.conv", cell.act, x)
            elif cell.block == "res":
                t = b.add(f"{p}.c2", None, b.add(f"{p}.c1", cell.act, x), residual=x)
            elif cell.block == "dws":
                t = b.add(f"{p}.pw", cell.act, b.add(f"{p}.dw", None, x), residual=x)
            elif cell.block == "wide":
                t = b.add(f"{p}.c3", None, b.add(f"{p}.rd", None, b.add(f"{p}.ex", cell.act, x)), residual=x)
            else:
                raise InputError(f"{label}: cell {i} is a {cell.block!r} block in training form; quantise "
                                 "the deployed form (srprune.models.deploy)")
        t = b.add("tail", None, t)
        skip, weight = "bicubic", model.up.weight.detach().clone()
    elif isinstance(model, PlainSR):  # the compiler's benchmark network (plain-c32-d6): whole-network int8 speed
        if not len(model.body):
            raise InputError(f"{label}: a PlainSR without body convs adds its head to itself; no int8 form")
        scale = model.shuffle.upscale_factor
        head = t = b.add("head", nn.ReLU(), 0)
        for i in range(len(model.body)):
            t = b.add(f"body.{i}", nn.ReLU(), t, residual=head if i == len(model.body) - 1 else None)
        t = b.add("tail", None, t)
        skip, weight = "none", None
    else:
        extra = ("; its transposed conv (deconv) has no int8 QConv form" if any(
            isinstance(m, nn.ConvTranspose2d) for m in model.modules()) else "")
        raise InputError(f"{label} cannot be quantised to int8{extra} (quantisable: ecbsr, espcn, genome and "
                         "their pruned forms, compiler.bench.PlainSR)")
    b.layers[-1].tail = True
    return Plan(b.layers, skip, weight, scale)


def adapt_channels(r: torch.Tensor, channels: int) -> torch.Tensor:
    """A residual sliced or zero-padded to `channels` (supernet's skip_add across a width change)."""
    c = r.shape[1]
    if c == channels:
        return r
    if c > channels:
        return r[:, :channels]
    return F.pad(r, (0, 0, 0, 0, 0, channels - c))


def global_skip(plan: Plan, x: torch.Tensor) -> torch.Tensor | None:
    """The float32 skip added to the tail's output, from the float image `x` (None: no skip)."""
    if plan.skip == "repeat":
        return x.repeat_interleave(plan.scale * plan.scale, dim=1)
    if plan.skip == "bicubic":
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), plan.skip_weight.to(x), groups=x.shape[1])
    return None


def precision_layers(model: nn.Module) -> list[str]:
    """Names of the layers of a deployed model that may be int8 or fp16 (the plan's convs, head and tail
    included; channel adapters are no convs); [] for a model with no plan (e.g. a cell with no int8 form)."""
    try:
        return [layer.name for layer in build_plan(model).layers]
    except InputError:
        return []


def _half(x: torch.Tensor) -> torch.Tensor:
    """Rounded to float16 and back, with a straight-through gradient."""
    return x + (x.half().float() - x).detach()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """int8 symmetric per output channel, simulated in float with a straight-through gradient."""
    amax = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True)
    s = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / s), -127, 127) * s
    return w + (q - w).detach()


class PlanNet(nn.Module):
    """The plan as a float32 module over the deployed model's own parameters (QAT trains them in place).

    mode "float": the model's function; "calibrate": float, observers record each uint8 tensor;
    "fake": int8 weights and uint8 activations simulated (the observers' ranges, EMA-updated in train mode).
    `precisions` ({layer name: fp32 | fp16 | int8}, absent = fp32): a mixed network (module docstring); None:
    every layer int8 (what `convert` turns into the integer model).
    """

    def __init__(self, model: nn.Module, method: str = "minmax", percentile: float = 99.99,
                 precisions: dict[str, str] | None = None) -> None:
        super().__init__()
        self.net = model
        self.plan = build_plan(model)
        self.scale = self.plan.scale
        self.mode = "float"
        names = [layer.name for layer in self.plan.layers]
        if precisions is None:
            self.precisions = ["int8"] * len(names)
        else:
            unknown = sorted(set(precisions) - set(names))
            bad = sorted({p for p in precisions.values() if p not in LAYER_PRECISIONS})
            if unknown or bad:
                raise InputError(f"precisions: {'no such layer ' + ', '.join(unknown) if unknown else ''}"
                                 f"{'; ' if unknown and bad else ''}"
                                 f"{'unknown precision ' + ', '.join(bad) if bad else ''}")
            self.precisions = [precisions.get(n, "fp32") for n in names]
        # which tensors are stored as uint8 / float16: those an int8 / fp16 layer reads (tensor 0, the image,
        # is uint8 codes already)
        self.uint8 = [False] * (len(names) + 1)
        self.half = [False] * (len(names) + 1)
        for layer, prec in zip(self.plan.layers, self.precisions):
            for t in (layer.src, layer.residual):
                if t is not None and t > 0 and prec != "fp32":
                    (self.uint8 if prec == "int8" else self.half)[t] = True
        # one observer per uint8 tensor: the output of every layer but the tail (unused for tensors kept wider)
        self.observers = nn.ModuleList(RangeObserver(method, percentile) for _ in self.plan.layers[:-1])

    @property
    def all_int8(self) -> bool:
        """Every layer int8: the network the integer model ("quantized") runs."""
        return all(p == "int8" for p in self.precisions)

    def finish_calibration(self) -> None:
        """Fix the ranges of every uint8 tensor from what calibration collected."""
        for i, obs in enumerate(self.observers):
            if self.uint8[i + 1]:
                obs.finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        fake = self.mode == "fake"
        tensors = [x]
        for i, layer in enumerate(self.plan.layers):
            conv = layer.conv
            prec = self.precisions[i] if fake else "fp32"
            w = {"int8": fake_quant_weight, "fp16": _half}.get(prec, lambda v: v)(conv.weight)
            y = F.conv2d(tensors[layer.src], w, conv.bias, padding=conv.padding, groups=conv.groups)
            if layer.act_module is not None:
                y = layer.act_module(y)
            if layer.residual is not None:
                y = y + adapt_channels(tensors[layer.residual], y.shape[1])
            if not layer.tail and self.uint8[i + 1]:
                obs = self.observers[i]
                if self.mode == "calibrate":
                    obs.collect(y)
                elif fake:
                    if self.training:
                        obs.ema(y)
                    y = obs.fake_quant(y)
            elif not layer.tail and fake and self.half[i + 1]:
                y = _half(y)
            tensors.append(y)
        y = tensors[-1]
        skip = global_skip(self.plan, x)
        if skip is not None:
            y = y + skip
        return F.pixel_shuffle(y, self.scale)
