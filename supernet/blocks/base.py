"""What every block type is: the `BlockType` interface, and the small tensor helpers blocks share.

A block type is one object (Once-for-All's lesson: a dynamic layer knows its own slicing, forward and
cost) that the supernet, the standalone network, the cost model and the latency model all ask, so a
new block type is one module of this package plus one line of its table (`supernet.blocks.BLOCK_TYPES`).

Parameter shapes are symbolic: each tensor's dimensions have roles, "cin" (input trunk width), "w"
(output width), "l0"/"l1" (inner layer widths), or a fixed int. The supernet slices its widest
tensors to those shapes; the standalone GenomeNet owns tensors of exactly those shapes. Both run the
block's one `forward`, so an extracted network computes what the supernet sub-network does.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Role = str | int
Roles = dict[str, tuple[Role, ...]]


class DeployedConv(NamedTuple):
    """One layer of a deployed cell as the compiler's rewrite emits it (one kernel; the latency model's unit).

    `kind` "conv" is a conv + bias (+ `act`) (+ the cell input added: `residual`); "adapter" is the channel
    pad/slice of a skip across a width change (no weights, no MACs). `name` is the module relative to the
    cell in the deployed GenomeNet ("c1"); the adapter, which has no module, is named "skip".
    """

    name: str
    cin: int
    cout: int
    k: int
    groups: int = 1
    act: str = "none"
    residual: bool = False
    kind: str = "conv"

    @property
    def macs_per_pixel(self) -> int:
        """C_out * (C_in / groups) * k * k per output pixel; an adapter computes nothing."""
        if self.kind != "conv":
            return 0
        return self.cout * (self.cin // self.groups) * self.k * self.k


def adapter(cin: int, width: int) -> list[DeployedConv]:
    """The skip's channel pad/slice when a cell changes the trunk width (see `skip_add`), else nothing."""
    return [DeployedConv("skip", cin, width, 1, kind="adapter")] if cin != width else []


class BlockType:
    """One block type. Subclasses set the class attributes and the forwards; one instance is registered.

    Defaults cover the common case: inner layers choose among the trunk widths, convs are dense with
    "same" padding, MACs are the deployed convs' MACs in both forms, params count the tensors of the
    deployed (or training) form.
    """

    name: ClassVar[str]
    inner: ClassVar[int] = 0  # inner layers whose width is searched (the genome's `layers`)
    params: ClassVar[Roles] = {}  # tensor name -> shape in roles; "act_w" (PReLU slopes) only for prelu
    searchable: ClassVar[bool] = True  # a genome may name it (False: only a deployed form)
    in_default_space: ClassVar[bool] = True  # part of SearchSpace's default `blocks`
    deploys_to: ClassVar[BlockType | None] = None  # the inference form `fuse` maps the weights to
    shares: ClassVar[tuple[str, tuple[str, ...]] | None] = None  # (block, tensor names) taken from it (share_weights)

    # --- the search space ---------------------------------------------------------------------------

    def layer_choices(self, space: Any, layer: int) -> tuple[int, ...]:
        """Width choices of inner layer `layer` in `space` (a SearchSpace, duck-typed: space imports blocks)."""
        return tuple(space.widths)

    # --- parameters ---------------------------------------------------------------------------------

    def param_names(self, activation: str) -> list[str]:
        """Names of the block's tensors for this activation."""
        return [n for n in self.params if n != "act_w" or activation == "prelu"]

    def conv_layout(self, name: str, sizes: dict[str, int]) -> tuple[int, int]:
        """(groups, padding) of the standalone nn.Conv2d holding weight `name`."""
        return 1, shape_of(self.params[name], sizes)[2] // 2

    # --- computation --------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:
        """The cell on `x` with weights `p` (shapes as in `params`): the supernet runs it on sliced shared weights."""
        raise NotImplementedError

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The standalone cell's forward through its nn.Conv2d/activation modules (so module hooks see each conv)."""
        raise NotImplementedError

    def fuse(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights of the `deploys_to` form computing the same function (only for blocks that have one)."""
        raise NotImplementedError(f"block {self.name!r} has no deployed form")

    # --- costs --------------------------------------------------------------------------------------

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """The deployed cell's layers in execution order (what srprune.latency times)."""
        raise NotImplementedError

    def macs_per_pixel(self, cin: int, width: int, layers: list[int], deployed: bool = True) -> int:
        """MACs per LR pixel of one cell (deployed form by default)."""
        return sum(c.macs_per_pixel for c in self.deployed_convs(cin, width, layers, "none"))

    def border_macs(self, cin: int, width: int, layers: list[int]) -> int:
        """Extra training-form MACs per pixel of the 1-pixel frame border (convs run on a padded input)."""
        return 0

    def param_count(self, cin: int, width: int, layers: list[int], activation: str, deployed: bool = True) -> int:
        """Learnable values of one cell (deployed form: those of `deploys_to`, which has no inner layers)."""
        block = self.deploys_to if (deployed and self.deploys_to is not None) else self
        sizes = block_sizes(cin, width, layers if block is self else [])
        total = 0
        for name in block.param_names(activation):
            n = 1
            for d in shape_of(block.params[name], sizes):
                n *= d
            total += n
        return total


def shape_of(roles: tuple[Role, ...], sizes: dict[str, int]) -> tuple[int, ...]:
    """Concrete shape of a role tuple."""
    return tuple(sizes[r] if isinstance(r, str) else r for r in roles)


def block_sizes(cin: int, width: int, layers: list[int]) -> dict[str, int]:
    """Role -> size for one cell."""
    sizes = {"cin": cin, "w": width}
    sizes.update({f"l{i}": v for i, v in enumerate(layers)})
    return sizes


def init_param(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Initial value: uniform convs with variance 1/fan_in (small tail), zero biases, PReLU 0.25, small ECB scales.

    Uses torch's global RNG, so a seeded run builds the same weights.
    """
    if name == "act_w":
        return torch.full(shape, 0.25)
    if name.endswith("_s") or name.endswith("_t"):
        return torch.randn(shape) * 1e-3
    if name.endswith("_b"):
        return torch.zeros(shape)
    fan_in = shape[1] * shape[2] * shape[3]
    bound = (3.0 / fan_in) ** 0.5  # variance 1/fan_in: keeps the signal scale through the trunk
    if name == "tail_w":
        bound *= 0.1  # start close to the bicubic skip, so early steps do not fight a noisy output
    return torch.empty(shape).uniform_(-bound, bound)


def activate(x: torch.Tensor, activation: str, slope: torch.Tensor | None) -> torch.Tensor:
    """relu, or prelu with per-channel slopes."""
    if activation == "prelu":
        return F.prelu(x, slope)
    return F.relu(x)


def skip_add(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out + x on the first min(C_out, C_in) channels (identity skip across a width change).

    Channel widths may change at a cell with a skip: the skip is then a slice or a zero-pad (plain
    tensor ops), so it is always an identity on the shared channels.
    """
    c_out, c_in = out.shape[1], x.shape[1]
    if c_in == c_out:
        return out + x
    if c_in > c_out:
        return out + x[:, :c_out]
    return out + F.pad(x, (0, 0, 0, 0, 0, c_out - c_in))


def add_identity(kernel: torch.Tensor) -> None:
    """kernel += identity on the first min(C_out, C_in) channels (the skip_add of a conv3x3), in place."""
    n = min(kernel.shape[0], kernel.shape[1])
    idx = torch.arange(n, device=kernel.device)
    kernel[idx, idx, 1, 1] += 1.0
