"""srprune/quant against the int8 contract's numpy reference (compiler.quant_spec.reference_conv), bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.quant_spec import reference_conv
from srprune.data.pairs import ImagePair
from srprune.errors import InputError
from srprune.data.sampler import PatchSampler
from srprune.models import build_model, deploy, load_model, save_model
from srprune.quant.plan import PlanNet
from srprune.quant.qmodel import to_layers
from srprune.quant.quantize import QuantConfig, calibrate, convert, quantize_model
from supernet.space import Cell, Genome


def _images(n: int, h: int = 24, w: int = 28, seed: int = 0) -> list[np.ndarray]:
    """Smooth-ish random images (a blurred noise field), so activations look like an image's."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.random((h // 4 + 2, w // 4 + 2, 3))
        img = np.kron(base, np.ones((4, 4, 1)))[:h, :w] * 0.8 + rng.random((h, w, 3)) * 0.2
        out.append((img * 255).round().astype(np.uint8))
    return out


def _codes(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def _reference_chain(q, image: np.ndarray) -> list[np.ndarray]:
    """Every tensor of the model computed layer by layer with the numpy reference (the residual adapter done
    independently: slice, or pad with the residual's zero point)."""
    tensors = [image]
    for n, layer in enumerate(to_layers(q)):
        spec = q.specs[n]
        res = None
        if spec["residual"] is not None:
            res = tensors[spec["residual"]]
            c = layer.weight.shape[0]
            if res.shape[1] > c:
                res = res[:, :c]
            elif res.shape[1] < c:
                pad = np.full((res.shape[0], c - res.shape[1], *res.shape[2:]), layer.residual.zero_point, np.uint8)
                res = np.concatenate([res, pad], axis=1)
        tensors.append(reference_conv(tensors[spec["src"]], layer, res))
    return tensors


def _shuffle(y: np.ndarray, s: int) -> np.ndarray:
    n, c, h, w = y.shape
    return y.reshape(n, c // (s * s), s, s, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (s * s), h * s, w * s)


def _genome_net(scale: int = 2, act: str = "prelu"):
    torch.manual_seed(3)
    cells = [Cell("res", 24, [16]), Cell("dws", 16, []), Cell("wide", 8, [16, 8]), Cell("ecb", 16, [16]),
             Cell("skip", 0, [])]
    net = deploy(build_model("genome", scale, genome=Genome(scale, 16, act, cells).to_dict())).eval()
    with torch.no_grad():  # trained-looking: a non-trivial tail and PReLU slopes that differ per channel
        net.tail.weight.mul_(10)
        for m in net.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return net


def _quantised(net, method: str = "minmax"):
    plan = PlanNet(net, method)
    calibrate(plan, _images(3), progress=False)
    return convert(plan)


def test_random_layers_equal_the_reference() -> None:
    """Random int8 layers (every activation, grouped, 1x1, residual sliced and padded, tail) are bit-exact."""
    rng = np.random.default_rng(0)
    specs = [dict(name="a", act="prelu", **{"in": 3}, out=8, k=3, groups=1, src=0, residual=None),
             dict(name="b", act="relu", **{"in": 8}, out=8, k=1, groups=1, src=1, residual=None),
             dict(name="c", act="none", **{"in": 8}, out=8, k=3, groups=8, src=2, residual=None),
             dict(name="d", act="tanh", **{"in": 8}, out=6, k=5, groups=1, src=3, residual=1),
             dict(name="e", act="relu", **{"in": 6}, out=10, k=3, groups=1, src=4, residual=2),
             dict(name="f", act="none", **{"in": 10}, out=12, k=3, groups=1, src=5, residual=None)]
    for s in specs:
        s.update(precision="int8", tail=s is specs[-1])
    q = build_model("quantized", 2, base={"name": "test", "config": {}}, layers=specs, skip="repeat")
    with torch.no_grad():
        for n, (layer, s) in enumerate(zip(q.layers, specs)):
            fan_in = s["in"] // s["groups"] * s["k"] ** 2
            w = torch.from_numpy(rng.integers(-127, 128, size=layer.weight.shape))
            w[torch.from_numpy(rng.random(layer.weight.shape) < 0.2)] = 0  # pruned weights
            layer.weight.copy_(w.to(torch.int8))
            layer.weight_scale.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, s["out"]).astype(np.float32)) * 1e-3)
            layer.bias.copy_(torch.from_numpy(rng.integers(-20000, 20000, s["out"]).astype(np.int32)))
            if s["act"] == "prelu":
                layer.act_param.copy_(torch.from_numpy(rng.uniform(0.05, 0.5, s["out"]).astype(np.float32)))
            if n + 1 < len(specs):  # output scale: about 3 standard deviations of the accumulator over 255 codes
                q.tensor_scale[n + 1] = float(np.float32(0.02 * 1e-3 * 73 * 60 * fan_in ** 0.5 * 6 / 255))
                q.tensor_zero[n + 1] = int(rng.integers(0, 256)) if s["act"] in ("none", "tanh") else 0
    img = _images(1, 11, 13, seed=5)[0]
    got = q.run_codes(torch.from_numpy(_codes(img)), keep=True)
    want = _reference_chain(q, _codes(img))
    for n, (g, w) in enumerate(zip(got, want)):
        assert g.numpy().dtype == w.dtype and np.array_equal(g.numpy(), w), f"tensor {n}"
        if w.dtype == np.uint8 and n:  # not a saturated, vacuous comparison
            assert ((w > 0) & (w < 255)).mean() > 0.3, f"tensor {n} saturated"


def test_ecbsr_whole_model_is_bit_exact() -> None:
    torch.manual_seed(0)
    net = deploy(build_model("ecbsr", 2, blocks=2, width=8)).eval()
    q = _quantised(net)
    img = _codes(_images(1, 17, 19, seed=9)[0])
    want = _reference_chain(q, img)
    skip = np.repeat(img.astype(np.float32) / np.float32(255), 4, axis=1)
    y = _shuffle((want[-1] + skip).astype(np.float32), 2)
    image = np.rint(np.clip(y, 0, 1) * np.float32(255)).astype(np.uint8)
    got = q.run_codes(torch.from_numpy(img)).numpy()
    assert np.array_equal(got, image)
    # forward (the eval/upscale path) returns that image / 255
    out = q(torch.from_numpy(img).float() / 255)
    assert torch.equal(torch.round(out * 255).to(torch.uint8), torch.from_numpy(image))


def test_plain_benchmark_network_is_bit_exact() -> None:
    """compiler.bench.PlainSR (benchmarks' plain-c32-d6: ReLU convs, a feature residual over the body, no global
    skip): the plan is the model, and the integer model equals the numpy chain."""
    from compiler.bench import PlainSR

    torch.manual_seed(0)
    net = PlainSR(width=8, body=3).eval()
    plan = PlanNet(net)
    assert [layer.residual for layer in plan.plan.layers] == [None, None, None, 1, None]
    x = torch.from_numpy(_codes(_images(1, 16, 16)[0])).float() / 255
    with torch.no_grad():
        assert torch.equal(plan(x), net(x))
    q = _quantised(net)
    img = _codes(_images(1, 17, 19, seed=9)[0])
    want = _reference_chain(q, img)
    image = np.rint(np.clip(_shuffle(want[-1], 2), 0, 1) * np.float32(255)).astype(np.uint8)
    assert np.array_equal(q.run_codes(torch.from_numpy(img)).numpy(), image)
    with pytest.raises(InputError, match="without body convs"):
        PlanNet(PlainSR(width=8, body=0))


def test_genome_model_layers_exact_and_image_within_one_lsb() -> None:
    """res (residual slice), dws (grouped), wide, plain cells and the bicubic skip of a searched network."""
    net = _genome_net()
    q = _quantised(net, "percentile")
    img = _codes(_images(1, 21, 18, seed=2)[0])
    got = q.run_codes(torch.from_numpy(img), keep=True)
    want = _reference_chain(q, img)
    for n, w in enumerate(want):
        assert np.array_equal(got[n].numpy(), w), f"tensor {n}"
    # the skip in float64 then rounded to float32 (independent of torch's float32 conv order): <= 1 LSB
    x = np.pad(img.astype(np.float64) / 255, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    k = net.up.weight.double().numpy()
    win = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(2, 3))  # 1, 3, h, w, 5, 5
    skip = np.einsum("nchwab,cjab->ncjhw", win, k.reshape(3, -1, 5, 5)).reshape(1, -1, *img.shape[2:])
    y = _shuffle(want[-1] + skip.astype(np.float32), 2)
    image = np.rint(np.clip(y, 0, 1) * 255).astype(np.int32)
    diff = np.abs(got[-1].numpy().astype(np.int32) - image)
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999


def test_plan_equals_the_model_and_fake_quant_tracks_the_integer_model() -> None:
    net = _genome_net(3, "relu")
    plan = PlanNet(net)
    x = torch.from_numpy(_codes(_images(1, 16, 16)[0])).float() / 255
    with torch.no_grad():
        assert torch.equal(plan(x), net(x))
    calibrate(plan, _images(3), progress=False)
    q = convert(plan)
    with torch.no_grad():
        fake = torch.round(plan(x).clamp(0, 1) * 255)
        real = torch.round(q(x) * 255)
        flt = torch.round(net(x).clamp(0, 1) * 255)
    assert (fake - real).abs().float().mean() < (flt - real).abs().float().mean() + 0.5
    assert (fake - real).abs().float().mean() < 1.0


def test_pruned_weights_stay_int8_zeros_through_qat() -> None:
    from srprune.pruning.run import prune_model

    torch.manual_seed(1)
    dense = build_model("ecbsr", 2, blocks=1, width=8)
    pruned, pmeta = prune_model(dense, {"scheme": "unstructured", "ratio": 0.5}, progress=False)
    zeros = {n: (pruned.get_submodule(n).weight == 0) for n in pmeta["layers"]}
    assert all(z.float().mean() > 0.4 for z in zeros.values())
    pairs = [ImagePair(f"i{n}", img, img[::2, ::2].copy()) for n, img in enumerate(_images(2, 32, 32))]
    sampler = PatchSampler(pairs, 2, 8, 2, seed=0)
    cfg = QuantConfig(qat_steps=3, batch_size=2, patch_size=8, lr=1e-2)
    q, meta = quantize_model(pruned, [p.lr for p in pairs], cfg, sampler, {"pruning": pmeta}, progress=False)
    assert sorted(meta["masked_layers"]) == sorted(zeros) and meta["qat"]["steps"] == 3
    for n, spec in enumerate(q.specs):
        if spec["name"] in zeros:
            assert torch.equal(q.layers[n].weight == 0, zeros[spec["name"]])
    assert not torch.equal(pruned.body[0].conv.weight, q.layers[0].weight.float())  # the source is untouched


def test_model_file_round_trip_with_weights_only(tmp_path) -> None:
    q = _quantised(_genome_net())
    path = tmp_path / "q.pt"
    save_model(path, q, meta={"quantization": {"method": "minmax"}})
    raw = torch.load(path, weights_only=True)
    assert raw["arch"]["name"] == "quantized" and raw["state_dict"]["layers.0.weight"].dtype == torch.int8
    assert [s["precision"] for s in raw["arch"]["config"]["layers"]] == ["int8"] * len(q.specs)
    back, info = load_model(path)
    x = torch.from_numpy(_codes(_images(1)[0])).float() / 255
    assert torch.equal(back(x), q(x))
    bad = torch.load(path, weights_only=True)
    bad["arch"]["config"]["layers"][0]["precision"] = "int4"
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="unknown precision 'int4'"):
        load_model(tmp_path / "bad.pt")


def test_ranges_against_numpy() -> None:
    """min-max over several batches, percentiles (numpy's linear interpolation), and the uint8 grid holding 0."""
    from srprune.quant.ranges import RangeObserver, qparams_from_range

    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((1, 4, 30, 30)).astype(np.float32) * (n + 1) for n in range(3)]
    mm, pc = RangeObserver("minmax"), RangeObserver("percentile", 99.0)
    for b in batches:
        mm.collect(torch.from_numpy(b))
        pc.collect(torch.from_numpy(b))
    mm.finish(), pc.finish()
    every = np.concatenate([b.ravel() for b in batches])
    assert float(mm.lo) == every.min() and float(mm.hi) == every.max()
    assert np.allclose([float(pc.lo), float(pc.hi)], np.percentile(every, [1.0, 99.0]), rtol=1e-5)
    for lo, hi in ((-1.3, 2.7), (0.0, 5.0), (0.5, 3.0), (-4.0, -1.0)):
        s, z = qparams_from_range(lo, hi)
        assert np.float32(s) == s and 0 <= z <= 255
        assert abs(s * (0 - z) - min(lo, 0)) <= s / 2 and abs(s * (255 - z) - max(hi, 0)) <= s / 2
