"""`ecb`: ECBSR's edge-oriented multi-branch block (Zhang et al. 2021), collapsed to one conv3x3 to deploy.

Branches: a conv3x3 (shared with the `conv` block under `share_weights`: both are "conv3x3 -> act"
to the trunk), a 1x1 (-> l0) -> 3x3, and three 1x1 -> fixed edge filters (Sobel-x, Sobel-y,
Laplacian) with learnt per-channel scales and biases; plus the identity. All linear, so they fold.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks.base import BlockType, DeployedConv, activate, add_identity, shape_of, skip_add
from supernet.blocks.conv import CONV
from supernet.blocks.plain import PLAIN

# The ECB's fixed edge filters: Sobel-x, Sobel-y, Laplacian.
ECB_MASKS: dict[str, list[list[float]]] = {
    "sx": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    "sy": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    "lp": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}


def _mask(name: str, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(ECB_MASKS[name], dtype=like.dtype, device=like.device)


def ecb_linear(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ECB's multi-branch linear part (before the activation), training form.

    The 1x1 convs see a zero-padded input, so their output border equals their bias; that makes
    the 1x1 -> 3x3 composition exactly one 3x3 conv at the image border too (as in ECBSR).
    """
    xp = F.pad(x, (1, 1, 1, 1))
    y = F.conv2d(x, p["conv_w"], p["conv_b"], padding=1)
    y = y + F.conv2d(F.conv2d(xp, p["e0_w"], p["e0_b"]), p["e1_w"], p["e1_b"])
    w = y.shape[1]
    for m in ("sx", "sy", "lp"):
        k = _mask(m, x).expand(w, 1, 3, 3) * p[f"{m}_s"].view(-1, 1, 1, 1)
        y = y + F.conv2d(F.conv2d(xp, p[f"{m}_w"], p[f"{m}_b"]), k, p[f"{m}_t"], groups=w)
    return skip_add(y, x)


def fuse_ecb(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collapse an ECB's branches into one plain conv3x3 (the `plain` block): why it is deployable."""
    kernel = p["conv_w"].clone()
    bias = p["conv_b"].clone()
    # 1x1 (W0, b0) then 3x3 (W1, b1): K[o,i] = sum_m W1[o,m] W0[m,i];  B = sum W1[o,m,:,:] b0[m] + b1
    w0, w1 = p["e0_w"][:, :, 0, 0], p["e1_w"]
    kernel += torch.einsum("omhw,mi->oihw", w1, w0)
    bias += w1.sum(dim=(2, 3)) @ p["e0_b"] + p["e1_b"]
    for m in ("sx", "sy", "lp"):
        mask = _mask(m, kernel)
        s, w0, b0 = p[f"{m}_s"], p[f"{m}_w"][:, :, 0, 0], p[f"{m}_b"]
        kernel += (s[:, None] * w0)[:, :, None, None] * mask
        bias += s * mask.sum() * b0 + p[f"{m}_t"]
    add_identity(kernel)
    out = {"conv_w": kernel, "conv_b": bias}
    if "act_w" in p:
        out["act_w"] = p["act_w"].clone()
    return out


class Ecb(BlockType):
    """The 1x1 -> 3x3 branch's width is searched: the widths times `space.ecb_expand`."""

    name = "ecb"
    inner = 1
    params = {"conv_w": ("w", "cin", 3, 3), "conv_b": ("w",),
              "e0_w": ("l0", "cin", 1, 1), "e0_b": ("l0",), "e1_w": ("w", "l0", 3, 3), "e1_b": ("w",),
              "sx_w": ("w", "cin", 1, 1), "sx_b": ("w",), "sx_s": ("w",), "sx_t": ("w",),
              "sy_w": ("w", "cin", 1, 1), "sy_b": ("w",), "sy_s": ("w",), "sy_t": ("w",),
              "lp_w": ("w", "cin", 1, 1), "lp_b": ("w",), "lp_s": ("w",), "lp_t": ("w",),
              "act_w": ("w",)}
    deploys_to = PLAIN
    shares = (CONV.name, ("conv_w", "conv_b", "act_w"))

    def layer_choices(self, space: Any, layer: int) -> tuple[int, ...]:
        """widths x ecb_expand."""
        return tuple(w * space.ecb_expand for w in space.widths)

    def conv_layout(self, name: str, sizes: dict[str, int]) -> tuple[int, int]:
        """Only the main conv3x3 pads: the other branches run on the once-padded input (see `ecb_linear`)."""
        return 1, (shape_of(self.params[name], sizes)[2] // 2 if name == "conv_w" else 0)

    def forward(self, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:  # noqa: D102
        return activate(ecb_linear(x, p), activation, p.get("act_w"))

    def module_forward(self, cell: nn.Module, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return cell.act(ecb_linear(x, cell.tensors()))

    def fuse(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # noqa: D102
        return fuse_ecb(p)

    def deployed_convs(self, cin: int, width: int, layers: list[int], activation: str) -> list[DeployedConv]:
        """One conv3x3 cin -> w + act (the branches collapsed)."""
        return PLAIN.deployed_convs(cin, width, [], activation)

    def macs_per_pixel(self, cin: int, width: int, layers: list[int], deployed: bool = True) -> int:
        """Training form: main 3x3, 1x1 -> 3x3, three 1x1 -> depthwise 3x3."""
        if deployed:
            return super().macs_per_pixel(cin, width, layers)
        m = layers[0]
        return cin * width * 9 + cin * m + m * width * 9 + 3 * (cin * width + width * 9)

    def border_macs(self, cin: int, width: int, layers: list[int]) -> int:
        """The 1x1 convs (e0 and the three edge branches) also run on the padded border."""
        return cin * layers[0] + 3 * cin * width


ECB = Ecb()
