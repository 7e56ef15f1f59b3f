"""Channel dependencies of a network, found by tracing it with torch.fx.

Removing output channel c of a conv is only exact if every place that tensor's channel c flows
is known: per-channel ops that keep 0 at 0 (ReLU, PReLU, Tanh, Identity), convs that read it
(their input channel c goes too), and residual adds (the other operand's producer must drop the
same channel: coupled layers share one mask). Anything else (PixelShuffle, the model output,
repeat/cat/reshape, a module called twice, parameters read directly) pins the channels: they are
never pruned. That is conservative and always correct, so it works on any traceable model
instead of a hand-written list per architecture.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from srprune.errors import InputError

# Per-channel modules/functions that map 0 to 0, so a zeroed channel stays zero through them.
_ZERO_KEEPING_MODULES = (nn.ReLU, nn.PReLU, nn.Tanh, nn.Identity, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh)
_ZERO_KEEPING_FUNCS = {F.relu, torch.relu, torch.tanh, F.leaky_relu, F.relu6, F.hardtanh}
_ZERO_KEEPING_METHODS = {"relu", "tanh"}
_ADDS = {operator.add, torch.add, operator.iadd}


@dataclass
class ChannelGroup:
    """Channels that must be pruned together: producers' outputs, consumers' inputs, per-channel params."""

    gid: int
    size: int
    producers: list[str] = field(default_factory=list)  # convs whose output channels these are
    consumers: list[str] = field(default_factory=list)  # convs reading them as input channels
    per_channel: list[str] = field(default_factory=list)  # e.g. PReLU with one weight per channel
    prunable: bool = True
    reason: str = ""


@dataclass
class ChannelGraph:
    """The channel groups of a model and which group each conv reads and writes."""

    groups: dict[int, ChannelGroup]
    out_group: dict[str, int]  # conv name -> group of its output channels
    in_group: dict[str, int]  # conv name -> group of its input channels


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: dict[int, str] = {}

    def new(self, fixed: str = "") -> int:
        self.parent.append(len(self.parent))
        if fixed:
            self.fixed[len(self.parent) - 1] = fixed
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.fixed and ra not in self.fixed:
                self.fixed[ra] = self.fixed[rb]
        return ra

    def fix(self, a: int, reason: str) -> None:
        self.fixed.setdefault(self.find(a), reason)


def _is_prunable_conv(mod: nn.Module) -> bool:
    return isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)) and mod.groups == 1


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace `model`, or raise InputError saying channel pruning cannot analyse it."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable code
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot trace {type(model).__name__} with torch.fx for channel pruning ({first})") from None


def _untraceable(model: nn.Module, reason: str) -> ChannelGraph:
    """Every conv in its own pinned group: masked schemes still work, channel pruning is refused."""
    groups, out_group = {}, {}
    for i, (name, mod) in enumerate(m for m in model.named_modules() if _is_prunable_conv(m[1])):
        groups[i] = ChannelGroup(i, mod.out_channels, producers=[name], prunable=False, reason=reason)
        out_group[name] = i
    return ChannelGraph(groups, out_group, {})


def channel_graph(model: nn.Module, strict: bool = False) -> ChannelGraph:
    """Find the channel groups of `model` (see the module docstring for the rules).

    A model torch.fx cannot trace raises InputError if `strict`, else gets every channel pinned.
    """
    try:
        gm = trace(model)
    except InputError as exc:
        if strict:
            raise
        return _untraceable(model, f"not traceable by torch.fx: {exc}")
    modules = dict(gm.named_modules())
    uf = _UnionFind()
    space: dict[fx.Node, int] = {}
    calls: dict[str, int] = {}
    out_space: dict[str, int] = {}
    in_space: dict[str, int] = {}
    per_channel: list[tuple[str, int]] = []
    direct_params: set[str] = set()

    def pin_inputs(node: fx.Node, reason: str) -> None:
        for arg in node.all_input_nodes:
            if arg in space:
                uf.fix(space[arg], reason)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            space[node] = uf.new("model input")
        elif node.op == "get_attr":
            direct_params.add(str(node.target).rsplit(".", 1)[0])
            space[node] = uf.new("parameter read directly")
        elif node.op == "output":
            pin_inputs(node, "model output")
        elif node.op == "call_module":
            name = str(node.target)
            mod = modules[name]
            calls[name] = calls.get(name, 0) + 1
            src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            if _is_prunable_conv(mod) and src is not None and len(node.all_input_nodes) == 1:
                in_space[name] = space[src]
                space[node] = out_space[name] = uf.new()
            elif isinstance(mod, _ZERO_KEEPING_MODULES) and src is not None and len(node.all_input_nodes) == 1:
                space[node] = space[src]
                if isinstance(mod, nn.PReLU) and mod.num_parameters > 1:
                    per_channel.append((name, space[src]))
            else:
                pin_inputs(node, f"read by {type(mod).__name__} {name}")
                space[node] = uf.new(f"made by {type(mod).__name__} {name}")
        elif node.op == "call_function" and node.target in _ADDS and len(node.args) == 2 \
                and all(isinstance(a, fx.Node) for a in node.args) and not node.kwargs:
            a, b = node.args
            space[node] = uf.union(space[a], space[b])
        elif (node.op == "call_function" and node.target in _ZERO_KEEPING_FUNCS
              or node.op == "call_method" and node.target in _ZERO_KEEPING_METHODS) \
                and len(node.all_input_nodes) == 1 and isinstance(node.args[0], fx.Node):
            space[node] = space[node.args[0]]
        else:
            pin_inputs(node, f"read by {node.target}")
            space[node] = uf.new(f"made by {node.target}")

    for name, n in calls.items():
        if n > 1 or name in direct_params:
            why = "called more than once" if n > 1 else "its parameters are read directly"
            for table in (in_space, out_space):
                if name in table:
                    uf.fix(table[name], f"{name} {why}")

    groups: dict[int, ChannelGroup] = {}
    for name, sid in out_space.items():
        root = uf.find(sid)
        mod = modules[name]
        size = mod.out_channels
        grp = groups.setdefault(root, ChannelGroup(root, size))
        grp.producers.append(name)
    for name, sid in in_space.items():
        root = uf.find(sid)
        if root in groups:
            groups[root].consumers.append(name)
    for name, sid in per_channel:
        root = uf.find(sid)
        if root in groups:
            groups[root].per_channel.append(name)
    for root, grp in groups.items():
        if root in uf.fixed:
            grp.prunable, grp.reason = False, uf.fixed[root]
    return ChannelGraph(groups, {n: uf.find(s) for n, s in out_space.items()},
                        {n: uf.find(s) for n, s in in_space.items()})
