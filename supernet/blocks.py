"""The block types as pure functions of their weights, shared by the supernet and the standalone net.

Every block is `block_forward(block, x, params, act)` with `params` a dict of tensors whose shapes
are given symbolically by `PARAM_ROLES` (roles: "cin" input width, "w" output width, "l0"/"l1" inner
layer widths). The supernet slices its widest tensors to those shapes; the standalone GenomeNet
owns tensors of exactly those shapes. Because both run this one function, an extracted network
computes the same as the supernet sub-network by construction.

The `conv` block is a conv3x3 + activation whose kernel is parameterised as W + identity (as
RepVGG's identity branch): the same function class as a plain conv3x3, folded into one kernel at
deployment (`plain`), but every block then keeps the trunk's features, which is what lets cells
share one meaning of each trunk channel across block choices.

Channel widths may change at a cell with a skip connection: the skip then adds the input to the
first min(cin, w) output channels (a slice or a zero-pad, both plain tensor ops), so the skip is
always an identity on the shared channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Role = str | int
# name -> shape in roles; "act_w" (PReLU slopes) exists only when the activation is prelu.
PARAM_ROLES: dict[str, dict[str, tuple[Role, ...]]] = {
    "conv": {"conv_w": ("w", "cin", 3, 3), "conv_b": ("w",), "act_w": ("w",)},
    "plain": {"conv_w": ("w", "cin", 3, 3), "conv_b": ("w",), "act_w": ("w",)},  # deployed conv/ecb
    "res": {"c1_w": ("l0", "cin", 3, 3), "c1_b": ("l0",), "act_w": ("l0",),
            "c2_w": ("w", "l0", 3, 3), "c2_b": ("w",)},
    "wide": {"ex_w": ("l0", "cin", 1, 1), "ex_b": ("l0",), "act_w": ("l0",),
             "rd_w": ("l1", "l0", 1, 1), "rd_b": ("l1",), "c3_w": ("w", "l1", 3, 3), "c3_b": ("w",)},
    "ecb": {"conv_w": ("w", "cin", 3, 3), "conv_b": ("w",),
            "e0_w": ("l0", "cin", 1, 1), "e0_b": ("l0",), "e1_w": ("w", "l0", 3, 3), "e1_b": ("w",),
            "sx_w": ("w", "cin", 1, 1), "sx_b": ("w",), "sx_s": ("w",), "sx_t": ("w",),
            "sy_w": ("w", "cin", 1, 1), "sy_b": ("w",), "sy_s": ("w",), "sy_t": ("w",),
            "lp_w": ("w", "cin", 1, 1), "lp_b": ("w",), "lp_s": ("w",), "lp_t": ("w",),
            "act_w": ("w",)},
    "dws": {"dw_w": ("cin", 1, 3, 3), "dw_b": ("cin",), "pw_w": ("w", "cin", 1, 1), "pw_b": ("w",),
            "act_w": ("w",)},
    "skip": {},
}
HEAD_ROLES = {"head_w": ("w", 3, 3, 3), "head_b": ("w",)}
# The ECB's fixed edge filters (ECBSR, Zhang et al. 2021): Sobel-x, Sobel-y, Laplacian.
ECB_MASKS: dict[str, list[list[float]]] = {
    "sx": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    "sy": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    "lp": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}


def param_names(block: str, activation: str) -> list[str]:
    """Names of a block's tensors for this activation."""
    return [n for n in PARAM_ROLES[block] if n != "act_w" or activation == "prelu"]


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
    """out + x on the first min(C_out, C_in) channels (identity skip across a width change)."""
    c_out, c_in = out.shape[1], x.shape[1]
    if c_in == c_out:
        return out + x
    if c_in > c_out:
        return out + x[:, :c_out]
    return out + F.pad(x, (0, 0, 0, 0, 0, c_out - c_in))


def _mask(name: str, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(ECB_MASKS[name], dtype=like.dtype, device=like.device)


def block_forward(block: str, x: torch.Tensor, p: dict[str, torch.Tensor], activation: str) -> torch.Tensor:
    """Run one cell of type `block` on `x` with weights `p` (shapes as in PARAM_ROLES)."""
    a = p.get("act_w")
    if block == "skip":
        return x
    if block == "plain":
        return activate(F.conv2d(x, p["conv_w"], p["conv_b"], padding=1), activation, a)
    if block == "conv":
        return activate(skip_add(F.conv2d(x, p["conv_w"], p["conv_b"], padding=1), x), activation, a)
    if block == "res":
        h = activate(F.conv2d(x, p["c1_w"], p["c1_b"], padding=1), activation, a)
        return skip_add(F.conv2d(h, p["c2_w"], p["c2_b"], padding=1), x)
    if block == "wide":
        h = activate(F.conv2d(x, p["ex_w"], p["ex_b"]), activation, a)
        h = F.conv2d(h, p["rd_w"], p["rd_b"])
        return skip_add(F.conv2d(h, p["c3_w"], p["c3_b"], padding=1), x)
    if block == "dws":
        h = F.conv2d(x, p["dw_w"], p["dw_b"], padding=1, groups=x.shape[1])
        return skip_add(activate(F.conv2d(h, p["pw_w"], p["pw_b"]), activation, a), x)
    if block == "ecb":
        return activate(ecb_linear(x, p), activation, a)
    raise ValueError(f"unknown block {block!r}")


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


def _add_identity(kernel: torch.Tensor) -> None:
    """kernel += identity on the first min(C_out, C_in) channels (the skip_add of a conv3x3)."""
    n = min(kernel.shape[0], kernel.shape[1])
    idx = torch.arange(n, device=kernel.device)
    kernel[idx, idx, 1, 1] += 1.0


def fuse_conv(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `conv` block (W + identity) as the one plain conv3x3 it is."""
    out = {k: v.clone() for k, v in p.items()}
    _add_identity(out["conv_w"])
    return out


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
    _add_identity(kernel)
    out = {"conv_w": kernel, "conv_b": bias}
    if "act_w" in p:
        out["act_w"] = p["act_w"].clone()
    return out


def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5: MATLAB's imresize bicubic)."""
    ax = x.abs()
    near = (a + 2) * ax**3 - (a + 3) * ax**2 + 1
    far = a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def bicubic_kernel(scale: int) -> torch.Tensor:
    """Weights (3*s^2, 1, 5, 5) of a grouped conv that, before PixelShuffle(s), upsamples x s bicubically.

    Output phase p of LR pixel k samples the input at k + (p + 0.5)/s - 0.5 (pixel-centre
    alignment, as MATLAB and torch with align_corners=False); the taps k-2..k+2 cover every phase.
    Channel c*s^2 + i*s + j is colour c, sub-pixel row i, column j: PixelShuffle's order.
    """
    taps = torch.arange(-2, 3, dtype=torch.float64)
    phases = [(p + 0.5) / scale - 0.5 for p in range(scale)]
    w1d = torch.stack([keys_cubic(d - taps) for d in phases])  # (s, 5)
    w1d = w1d / w1d.sum(dim=1, keepdim=True)
    w2d = torch.einsum("it,ju->ijtu", w1d, w1d).reshape(scale * scale, 1, 5, 5)
    return w2d.repeat(3, 1, 1, 1).float()


def bicubic_skip(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The global skip before PixelShuffle: edge-replicated input through the fixed bicubic conv."""
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)


# --- cost of one cell (per block type; supernet.complexity sums them over a genome) -----------------------


def block_macs_per_pixel(block: str, cin: int, width: int, layers: list[int], deployed: bool = True) -> int:
    """MACs per LR pixel of one cell."""
    if block == "skip":
        return 0
    if block in ("conv", "plain") or (block == "ecb" and deployed):
        return cin * width * 9
    if block == "res":
        return cin * layers[0] * 9 + layers[0] * width * 9
    if block == "wide":
        return cin * layers[0] + layers[0] * layers[1] + layers[1] * width * 9
    if block == "dws":
        return cin * 9 + cin * width
    if block == "ecb":  # training form: main 3x3, 1x1->3x3, three 1x1 -> depthwise 3x3
        m = layers[0]
        return cin * width * 9 + cin * m + m * width * 9 + 3 * (cin * width + width * 9)
    raise ValueError(f"unknown block {block!r}")


def block_params(block: str, cin: int, width: int, layers: list[int], activation: str, deployed: bool = True) -> int:
    """Learnable values of one cell."""
    if block == "skip":
        return 0
    if block == "ecb" and deployed:
        block, layers = "plain", []
    sizes = block_sizes(cin, width, layers)
    total = 0
    for name in param_names(block, activation):
        n = 1
        for d in shape_of(PARAM_ROLES[block][name], sizes):
            n *= d
        total += n
    return total
