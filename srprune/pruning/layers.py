"""The layers a spec can address: every dense (groups=1) Conv2d of the deployed model, by module name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from srprune.pruning.graph import ChannelGraph, channel_graph


@dataclass(frozen=True)
class LayerInfo:
    """What a pruning scheme needs to know about one conv.

    The weight is viewed as a matrix of `rows` = out channels by `cols` = in * kh * kw, with
    column index c = (i * kh + y) * kw + x (PyTorch's weight.reshape(out, -1) order, the im2col
    order a GEMM kernel uses).
    """

    name: str
    out_channels: int
    in_channels: int
    kernel: tuple[int, int]
    channel_prunable: bool  # its output channels can be removed (see srprune.pruning.graph)
    coupled: tuple[str, ...]  # other convs whose outputs share its channel mask (residual adds)
    reason: str  # why the outputs are pinned, if they are

    @property
    def rows(self) -> int:  # noqa: D102
        return self.out_channels

    @property
    def cols(self) -> int:  # noqa: D102
        return self.in_channels * self.kernel[0] * self.kernel[1]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for listings and JSON."""
        out = asdict(self)
        out["kernel"], out["coupled"] = list(self.kernel), list(self.coupled)
        return out


def prunable_layers(model: nn.Module, graph: ChannelGraph | None = None) -> dict[str, LayerInfo]:
    """Map module name -> LayerInfo for every Conv2d with groups=1 in `model` (pass the deployed form)."""
    if graph is None:
        graph = channel_graph(model)
    out: dict[str, LayerInfo] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Conv2d) or mod.groups != 1:
            continue
        gid = graph.out_group.get(name)
        grp = graph.groups.get(gid) if gid is not None else None
        prunable = bool(grp and grp.prunable)
        reason = "" if prunable else (grp.reason if grp else "not reached by the traced forward")
        coupled = tuple(p for p in (grp.producers if grp else []) if p != name)
        out[name] = LayerInfo(name, mod.out_channels, mod.in_channels, tuple(mod.kernel_size), prunable,
                              coupled, reason)
    return out


def format_layers(layers: dict[str, LayerInfo]) -> str:
    """A text table for `srprune prune MODEL --list`."""
    lines = [f"{'layer':<24} {'out':>5} {'in':>5} {'kernel':>6} {'matrix':>11}  channels"]
    for info in layers.values():
        chan = "prunable" if info.channel_prunable else f"pinned ({info.reason})"
        if info.coupled:
            chan += f", coupled with {', '.join(info.coupled)}"
        kernel = f"{info.kernel[0]}x{info.kernel[1]}"
        lines.append(f"{info.name:<24} {info.out_channels:>5} {info.in_channels:>5} {kernel:>6} "
                     f"{f'{info.rows}x{info.cols}':>11}  {chan}")
    return "\n".join(lines)
