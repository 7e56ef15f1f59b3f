"""The shape and epilogue of one int8 conv kernel (the cache key of its code; shared by kernel.py and writeback.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Int8ConvSpec:
    """The shape and epilogue of one int8 conv kernel (stride 1, square zero-point padding)."""

    n: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    pad: int
    act: str = "none"
    slope: float = 0.0  # leaky ReLU's slope
    residual: bool = False
    tail: bool = False  # float32 output (the last conv), else uint8
    shuffle: int = 1  # tail: PixelShuffle(shuffle) fused
    skip: bool = False  # tail: + nearest-neighbour global skip of the uint8 input image
    clamp: bool = False  # tail: clamp to [0, 1] (the tail writes the network's output image)
    res_channels: int = 0  # the residual's channels where they differ from cout: sliced, or zero-padded (adds 0)
    fskip: bool = False  # tail: + a float32 skip tensor (n, cout, oh, ow) before the shuffle (a bicubic skip)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.h + 2 * self.pad - self.kh + 1, self.w + 2 * self.pad - self.kw + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        oh, ow = self.out_hw
        s = self.shuffle
        return self.n, self.cout // (s * s), oh * s, ow * s

    @property
    def groups4(self) -> int:
        """Groups of 4 input channels (the last one padded)."""
        return -(-self.cin // 4)

    @property
    def columns(self) -> int:
        return self.groups4 * self.kh * self.kw
