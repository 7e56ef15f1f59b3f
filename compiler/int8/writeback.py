"""The int8 kernels' fused write-back: steps 2-5 of docs/quantization.md for one output row.

float32(acc + bias') * m[o], the activation (compiler.epilogue's vector functions, shared with the fp32 kernels),
+ s_r * float32(q_r - z_r), then the requantised uint8 (round half to even: `nearbyint`) or, for the tail, float32
with PixelShuffle interleaved in registers (one vector shuffle per s channels, as compiler.kernels.store_shuffled),
the nearest-neighbour global skip and the clamp to [0, 1]. A tile that overhangs the row's end stores lane by lane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from compiler.epilogue import activation
from compiler.kernels import load_as, requantize, splat
from compiler.int8.spec import Int8ConvSpec
from compiler.quant_spec import QConv


@dataclass
class WriteBack:
    """The contract's steps 2-5 for one output row (docs/quantization.md), vector and lane-by-lane forms."""

    spec: Int8ConvSpec
    layer: QConv
    out: object
    bias: object
    mult: object
    alpha: object
    resid: object
    image: object
    b: object
    y: object
    fskip: object = None  # the tail's float32 skip tensor (a bicubic skip), added before the shuffle

    def activated(self, acc, oc, lanes: int):
        """float32(acc + bias') * m, then the activation."""
        def splat(e):
            return tirx.Broadcast(e, lanes) if lanes > 1 else e
        s = acc + splat(tirx.BufferLoad(self.bias, [oc]))
        v = tirx.Cast("float32" if lanes == 1 else f"float32x{lanes}", s) * splat(tirx.BufferLoad(self.mult, [oc]))
        alpha = tirx.BufferLoad(self.alpha, [oc]) if self.alpha is not None else None
        return activation(self.spec.act, v, lanes, alpha, self.spec.slope)

    def finish(self, v, oc, idx, lanes: int):
        """+ residual, then the uint8 requantisation (inner layers) or v itself (the tail, before the shuffle)."""
        layer = self.layer
        if self.resid is not None:
            rc = self.spec.res_channels
            padded = 0 < rc < self.spec.cout  # channels >= rc add the zero-padding: (z_r - z_r) = 0
            ch = tirx.min(oc, rc - 1) if padded else oc
            term = load_as(tirx.BufferLoad(self.resid, [self.b, ch, self.y, idx]), "uint8",
                           (layer.residual.scale, int(layer.residual.zero_point)), lanes)
            if padded:
                keep = tirx.Select(oc < rc, splat(1.0, "float32", 1), splat(0.0, "float32", 1))
                term = term * (tirx.Broadcast(keep, lanes) if lanes > 1 else keep)
            v = v + term
        if self.spec.tail:
            if self.fskip is not None:
                v = v + tirx.BufferLoad(self.fskip, [self.b, oc, self.y, idx])
            return v
        q = requantize(v, layer.output.scale, int(layer.output.zero_point), lanes)
        return tirx.Cast("uint8" if lanes == 1 else f"uint8x{lanes}", q)

    def write(self, T, ocs: list, accs: list, x, vec: int, whole: bool) -> None:  # noqa: N803
        """Store the outputs of channels `ocs` (s of them for a fused shuffle, else one) at columns x .. x+vec-1."""
        ow = self.spec.out_hw[1]
        acts = [T.Bind(self.activated(a, oc, vec)) for a, oc in zip(accs, ocs)]
        if whole:
            self._store(T, ocs, acts, x, vec)
            return
        with T.If(x + vec <= ow):
            with T.Then():
                self._store(T, ocs, acts, x, vec)
            with T.Else():
                for lane in range(vec):
                    with T.If(x + lane < ow):
                        with T.Then():
                            self._store(T, ocs, [tirx.Shuffle([a], [lane]) for a in acts], x + lane, 1)

    def _store(self, T, ocs: list, acts: list, x, lanes: int) -> None:  # noqa: N803
        idx = tirx.Ramp(x, 1, lanes) if lanes > 1 else x
        vals = [self.finish(a, oc, idx, lanes) for a, oc in zip(acts, ocs)]
        if not self.spec.tail:
            T.buffer_store(self.out, vals[0], [self.b, ocs[0], self.y, idx])
            return
        s = self.spec.shuffle
        first = ocs[0]
        channel = tirx.floordiv(first, s * s)
        row = self.y * s + tirx.floormod(tirx.floordiv(first, s), s)
        skip = None
        if self.image is not None:
            pix = tirx.BufferLoad(self.image, [self.b, channel, self.y, idx])
            skip = tirx.Cast("float32" if lanes == 1 else f"float32x{lanes}", pix)
        if lanes == 1:  # an overhanging tile's lane: s scalars
            for j, v in enumerate(vals):
                T.buffer_store(self.out, self._image(v, skip, 1), [self.b, channel, row, x * s + j])
            return
        n = s * lanes
        mixed = tirx.Shuffle(vals, [(m % s) * lanes + m // s for m in range(n)]) if s > 1 else vals[0]
        if skip is not None and s > 1:
            skip = tirx.Shuffle([skip] * s, [m // s for m in range(n)])  # s copies: a Shuffle never widens its inputs
        T.buffer_store(self.out, self._image(mixed, skip, n), [self.b, channel, row, tirx.Ramp(x * s, 1, n)])

    def _image(self, v, skip, lanes: int):
        """+ the global skip (the uint8 image pixel / 255 in float32), clamp to [0, 1] (the tail writing the image)."""
        def c(value):
            return splat(float(np.float32(value)), "float32", lanes)
        if skip is not None:
            v = v + skip * c(1.0 / 255.0)
        return tirx.min(tirx.max(v, c(0.0)), c(1.0)) if self.spec.clamp else v
