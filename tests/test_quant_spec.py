"""The int8 contract's numpy reference against PyTorch float64 convolution (exact for these integer sizes)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compiler.quant_spec import IMAGE_INPUT, QConv, QParams, quantize_bias, reference_conv


def _layer(rng: np.random.Generator, out_ch: int, in_ch: int, output: QParams | None, act: str = "relu") -> QConv:
    weight = rng.integers(-127, 128, size=(out_ch, in_ch, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.001, 0.01, size=out_ch).astype(np.float32)
    bias = quantize_bias(rng.normal(size=out_ch), 0.02, w_scale)
    return QConv(weight, w_scale, bias, QParams(0.02, 113), output, act)


def test_reference_matches_float64_torch_conv() -> None:
    rng = np.random.default_rng(0)
    layer = _layer(rng, 8, 5, QParams(0.05, 7))
    q_x = rng.integers(0, 256, size=(1, 5, 9, 11)).astype(np.uint8)
    got = reference_conv(q_x, layer)
    real_x = torch.tensor((q_x.astype(np.float64) - 113))
    acc = F.conv2d(real_x, torch.tensor(layer.weight.astype(np.float64)), padding=1).numpy()
    acc = np.rint(acc).astype(np.int64) + layer.bias.reshape(1, -1, 1, 1)
    y = np.maximum(acc.astype(np.float32) * layer.multiplier().reshape(1, -1, 1, 1), 0)
    want = np.clip(np.rint(y * np.float32(1 / 0.05)) + 7, 0, 255)
    assert got.dtype == np.uint8 and np.array_equal(got, want.astype(np.uint8))


def test_tail_writes_float_and_image_input_is_exact() -> None:
    rng = np.random.default_rng(1)
    layer = _layer(rng, 12, 3, None, "none")
    layer = QConv(layer.weight, layer.weight_scale, layer.bias, IMAGE_INPUT, None)
    img = rng.integers(0, 256, size=(1, 3, 4, 4)).astype(np.uint8)
    out = reference_conv(img, layer)
    assert out.dtype == np.float32 and out.shape == (1, 12, 4, 4)


def test_contract_violations_are_refused() -> None:
    with pytest.raises(ValueError):
        QParams(0.0, 0)
    with pytest.raises(ValueError):
        QParams(0.1, 256)
    with pytest.raises(ValueError):
        QConv(np.full((1, 1, 3, 3), -128, np.int8), np.ones(1, np.float32), np.zeros(1, np.int32),
              QParams(0.1, 0), None)
