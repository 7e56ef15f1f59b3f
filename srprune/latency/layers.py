"""Genome/model -> the layer configurations the compiler's latency model times and sums.

Why here: `compiler` must not know the supernet, and `supernet` must not import the compiler; this
module knows both. The mapping mirrors what `compiler.rewrite` makes of a deployed GenomeNet (read
its Relax IR: one kernel per conv chain, conv + bias + act + residual; a channel pad/slice for a skip
across a width change; tail conv + bicubic skip + PixelShuffle fused): each block type lists its deployed
convs itself (supernet.blocks, `deployed_convs`), so this module knows no block by name:

    head    conv3x3 3->head (+bias)
    conv    conv3x3 cin->w +act                         (deployed: W + identity folded in)
    ecb     conv3x3 cin->w +act                         (deployed: branches collapsed)
    res     conv3x3 cin->l0 +act; [adapter cin->w]; conv3x3 l0->w +residual
    wide    conv1x1 cin->l0 +act; conv1x1 l0->l1; [adapter]; conv3x3 l1->w +residual
    dws     dwconv3x3 cin->cin; [adapter]; conv1x1 cin->w +act +residual
    tail    tail(w, scale)

All cells run at the LR size of the frame: floor(output / scale), as for MACs (DESIGN.md).
Precision (`LayerConfig.precision`, fp32 / fp16 / int8) is per layer: `named_genome_layers(..., precision=)` takes
one for the whole network or a {deployed layer name: precision} mapping (names it lacks are fp32; an adapter it
does not name takes its consumer's, the next layer's: the int8 network slices or pads a residual in the consuming
kernel). `space_layers(..., precisions=)` lists every configuration in each precision (no int8 adapters: they
have no kernel of their own).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from compiler.latency.config import LayerConfig
from srprune.errors import InputError
from supernet.blocks import deployed_convs
from supernet.errors import SpaceError
from supernet.space import Genome, SearchSpace

HD_720P = (720, 1280)  # (H, W) of the output frame


def lr_size(out_hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR input (H, W) of an output frame."""
    h, w = out_hw[0] // scale, out_hw[1] // scale
    if h < 1 or w < 1:
        raise InputError(f"output size {out_hw[1]}x{out_hw[0]} is smaller than one input pixel at x{scale}")
    return h, w


def _conv(cin: int, cout: int, hw: tuple[int, int], k: int = 3, *, groups: int = 1, act: str = "none",
          residual: bool = False, prune: dict | None = None) -> LayerConfig:
    p = prune or {}
    return LayerConfig("conv", cin, cout, hw[0], hw[1], k=k, groups=groups, pad=k // 2, bias=True, act=act,
                       residual=residual, scheme=p.get("scheme", "dense"), ratio=float(p.get("ratio", 0.0)),
                       block=tuple(p.get("block", (0, 0))))


def _cell_layers(block: str, cin: int, width: int, layers: list[int], act: str, hw: tuple[int, int],
                 prefix: str, prune: dict[str, dict]) -> Iterator[tuple[str, LayerConfig]]:
    """(module name in the deployed GenomeNet, config) of one cell's layers, in execution order: the block
    type's own `deployed_convs` (supernet.blocks), as LayerConfigs."""
    try:
        convs = deployed_convs(block, cin, width, layers, act)
    except SpaceError as e:
        raise InputError(str(e)) from None
    for c in convs:
        name = f"{prefix}.{c.name}"
        if c.kind == "adapter":
            yield name, LayerConfig("adapter", c.cin, c.cout, hw[0], hw[1], k=c.k, pad=0, bias=False)
        else:
            yield name, _conv(c.cin, c.cout, hw, c.k, groups=c.groups, act=c.act, residual=c.residual,
                              prune=prune.get(name))


def named_genome_layers(genome: Genome | dict, out_hw: tuple[int, int] = HD_720P,
                        prune: dict[str, dict] | None = None,
                        precision: str | Mapping[str, str] = "fp32") -> list[tuple[str, LayerConfig]]:
    """(name, config) of every layer of the deployed network of `genome` for an output of `out_hw`.

    `prune` maps deployed module names (e.g. "cells.0.c1") to {"scheme", "ratio", "block"}; layers it
    does not name are dense. `precision`: one for every layer, or per deployed name (module docstring).
    """
    g = Genome.coerce(genome)
    hw = lr_size(out_hw, g.scale)
    prune = prune or {}
    out = [("head", _conv(3, g.head, hw, prune=prune.get("head")))]
    for i, (cin, c) in enumerate(zip(g.widths_in(), g.cells)):
        out.extend(_cell_layers(c.block, cin, c.width, c.layers, g.activation, hw, f"cells.{i}", prune))
    out.append(("tail", LayerConfig("tail", g.out_width, 3 * g.scale**2, hw[0], hw[1], k=3, pad=1,
                                    scale=g.scale)))
    return with_precision(out, precision)


def with_precision(named: list[tuple[str, LayerConfig]],
                   precision: str | Mapping[str, str]) -> list[tuple[str, LayerConfig]]:
    """`named` layers in `precision` (one name for all, or per layer name; see the module docstring)."""
    if isinstance(precision, str):
        return [(n, replace(c, precision=precision)) for n, c in named]
    unknown = sorted(set(precision) - {n for n, _ in named})
    if unknown:
        raise InputError(f"precision names layer {unknown[0]!r}, which the network does not have")
    out = list(named)
    for i in reversed(range(len(out))):  # backwards: an adapter takes its consumer's (already set) precision
        n, c = out[i]
        p = precision.get(n) or (out[i + 1][1].precision if c.op == "adapter" and i + 1 < len(out) else "fp32")
        out[i] = (n, replace(c, precision=p))
    return out


def latency_prune(prune: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A searched candidate's {layer: {scheme, ratio, block}} as `named_genome_layers` takes it (ratio 0 = dense);
    its {layer: precision} goes to `named_genome_layers`'s `precision` as it is."""
    return {name: {"scheme": p["scheme"], "ratio": p["ratio"], "block": tuple(p.get("block") or (0, 0))}
            for name, p in prune.items() if p.get("ratio", 0) > 0}


def fused_in_c_lib(c: LayerConfig) -> bool:
    """Whether the int8 c-lib runs no kernel for `c`: a channel adapter (the consumer's write-back slices or
    zero-pads the residual), whichever precision its consumer has."""
    return c.op == "adapter"


def genome_layers(genome: Genome | dict, out_hw: tuple[int, int] = HD_720P,
                  prune: dict[str, dict] | None = None, precision: str | Mapping[str, str] = "fp32") -> list[LayerConfig]:
    """The layer configurations of `genome` (see `named_genome_layers`)."""
    return [c for _, c in named_genome_layers(genome, out_hw, prune, precision)]


def in_precisions(configs: list[LayerConfig], precisions: tuple[str, ...] | list[str]) -> list[LayerConfig]:
    """`configs` in each of `precisions` (fp32 configs kept as they are), without int8 adapters (no kernel of
    their own: fused into their consumer), distinct."""
    out: dict[str, LayerConfig] = {}
    for p in precisions:
        for c in configs:
            if not (p == "int8" and c.op == "adapter"):
                c = replace(c, precision=p)
                out.setdefault(c.key(), c)
    return list(out.values())


def space_layers(space: SearchSpace, out_hw: tuple[int, int] = HD_720P,
                 precisions: tuple[str, ...] | list[str] = ("fp32",)) -> list[LayerConfig]:
    """Every distinct layer configuration a genome of `space` can produce at `out_hw` (dense), in each of
    `precisions` (`in_precisions`), sorted by cost.

    Cheapest first, so an interrupted build has covered as many configurations as it could.
    """
    act = space.activation
    seen: dict[str, LayerConfig] = {}
    for scale in space.scales:
        hw = lr_size(out_hw, scale)
        for w in space.widths:
            for c in [_conv(3, w, hw), LayerConfig("tail", w, 3 * scale**2, hw[0], hw[1], k=3, pad=1, scale=scale)]:
                seen.setdefault(c.key(), c)
        for block in space.blocks:
            if block == "skip":
                continue
            for cin in space.widths:
                for width in space.widths:
                    for layers in space.inner_choices(block):
                        for _, c in _cell_layers(block, cin, width, layers, act, hw, "x", {}):
                            seen.setdefault(c.key(), c)
    return sorted(in_precisions(list(seen.values()), precisions), key=lambda c: (c.macs() + c.elements(), c.key()))


def model_layers(model: Any, out_hw: tuple[int, int] = HD_720P, meta: dict | None = None) -> list[LayerConfig]:
    """Layer configurations of a GenomeNet (a `genome` model); other architectures are refused.

    Pruned files keep their dense shapes until the compiler has sparse kernels, so they time as dense.
    """
    genome = getattr(model, "genome", None)
    if not isinstance(genome, dict):
        raise InputError(f"latency prediction needs a searched network (a 'genome' model), "
                         f"got {type(model).__name__}")
    return genome_layers(genome, out_hw)
