"""Reference models: registry, shapes, published architectures, ECBSR re-parameterisation, resolve_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from torch import nn

from srprune.errors import InputError
from srprune.imresize import imresize
from srprune.models import (ModelInfo, build_model, deploy, list_models, register, resolve_model, save_model)
from srprune.models import registry as registry_mod
from srprune.models.ecbsr import ECB, Conv1x1Edge, PlainConv

SCALES = (2, 3, 4)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomize(model: nn.Module, all_params: bool = True) -> nn.Module:
    """Give parameters random values of order 0.3 (zero biases and 1e-3 edge scales hide bugs).

    With `all_params=False` conv kernels keep their fan-in-scaled default init, so a deep net's
    output stays O(1) as in a trained one and float32 rounding stays far below the tolerance.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if all_params or p.dim() <= 1 or name.endswith(".scale"):
                p.copy_(torch.randn_like(p) * 0.3)
    return model


def test_list_models_has_references():
    assert {"bicubic", "fsrcnn", "espcn", "ecbsr"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", ["bicubic", "fsrcnn", "espcn", "ecbsr"])
@pytest.mark.parametrize("scale", SCALES)
def test_every_model_and_scale_upscales(name, scale):
    model = build_model(name, scale)
    x = torch.rand(2, 3, 7, 9)
    y = model(x)
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    assert torch.isfinite(y).all()
    assert model.scale == scale
    assert model.arch["name"] == name and model.arch["scale"] == scale
    assert isinstance(model.arch["config"], dict)


def test_bicubic_matches_numpy_imresize():
    img = data.astronaut()[100:124, 200:230].astype(np.float64) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for scale in SCALES:
        got = build_model("bicubic", scale)(x)[0].permute(1, 2, 0).numpy()
        want = imresize(img, scale=scale)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_fsrcnn_follows_the_paper():
    model = build_model("fsrcnn", 3, d=32, s=5, m=1)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    shapes = [(tuple(c.weight.shape), c.stride) for c in convs]
    # conv(5,d,c) conv(1,s,d) m x conv(3,s,s) conv(1,d,s) deconv(9,c,d) with stride = scale
    assert shapes == [((32, 3, 5, 5), (1, 1)), ((5, 32, 1, 1), (1, 1)), ((5, 5, 3, 3), (1, 1)),
                      ((32, 5, 1, 1), (1, 1)), ((32, 3, 9, 9), (3, 3))]
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert [p.num_parameters for p in prelus] == [32, 5, 5, 32]


def test_espcn_is_conv_chain_and_pixel_shuffle():
    model = _randomize(build_model("espcn", 3))
    x = torch.rand(1, 3, 6, 5)
    c1, c2, c3 = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in (c1, c2, c3)] == [(64, 3, 5, 5), (32, 64, 3, 3), (27, 32, 3, 3)]
    h = torch.tanh(F.conv2d(x, c1.weight, c1.bias, padding=2))
    h = torch.tanh(F.conv2d(h, c2.weight, c2.bias, padding=1))
    want = F.pixel_shuffle(F.conv2d(h, c3.weight, c3.bias, padding=1), 3)
    torch.testing.assert_close(model(x), want)
    relu = build_model("espcn", 2, act="relu")
    assert any(isinstance(m, nn.ReLU) for m in relu.modules())


def test_ecbsr_skip_is_nearest_upscale():
    # With the tail producing zeros, the output is the paper's skip alone: the input repeated over
    # scale^2 sub-pixels, i.e. nearest-neighbour upscaling.
    for scale in SCALES:
        model = build_model("ecbsr", scale, deployed=True)
        with torch.no_grad():
            model.body[-1].conv.weight.zero_()
            model.body[-1].conv.bias.zero_()
        x = torch.rand(1, 3, 5, 6)
        torch.testing.assert_close(model(x), F.interpolate(x, scale_factor=scale, mode="nearest"))


@pytest.mark.parametrize("kind,kernel", [
    ("sobelx", [[1, 0, -1], [2, 0, -2], [1, 0, -1]]),
    ("sobely", [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]),
    ("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
])
def test_edge_branch_is_the_published_filter(kind, kernel):
    branch = Conv1x1Edge(1, 1, kind)
    with torch.no_grad():
        branch.conv0.weight.fill_(1.0)
        branch.conv0.bias.zero_()
        branch.scale.fill_(1.0)
        branch.bias.zero_()
    img = np.random.default_rng(1).random((6, 7))
    padded = np.pad(img, 1)
    k = np.asarray(kernel, dtype=np.float64)
    want = np.array([[np.sum(padded[i:i + 3, j:j + 3] * k) for j in range(7)] for i in range(6)])
    got = branch(torch.from_numpy(img).float()[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("with_idt", [True, False])
def test_ecbsr_deploy_matches_training_form(scale, with_idt):
    model = _randomize(build_model("ecbsr", scale, with_idt=with_idt), all_params=False)
    plain = deploy(model)
    assert plain is not model
    assert plain.arch["config"]["deployed"] is True and plain.scale == scale
    # one conv3x3 per layer, nothing else convolutional
    convs = [m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 4 + 2 and all(c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(m, ECB) for m in plain.modules())
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        y = model(x)
        diff = (y - plain(x)).abs().max().item()
    assert diff <= 1e-4
    assert deploy(plain) is plain


def test_ecb_identity_only_where_shapes_allow():
    assert ECB(8, 8, 2.0, "prelu", True).with_idt
    assert not ECB(3, 8, 2.0, "prelu", True).with_idt
    block = _randomize(ECB(4, 4, 2.0, "prelu", True))
    plain = PlainConv(4, 4, "prelu")
    k, b = block.rep_params()
    with torch.no_grad():
        plain.conv.weight.copy_(k)
        plain.conv.bias.copy_(b)
        plain.act.load_state_dict(block.act.state_dict())
    x = torch.rand(1, 4, 5, 5)
    torch.testing.assert_close(block(x), plain(x), atol=1e-5, rtol=1e-5)
    # every branch matters: dropping any one of them changes the merged kernel noticeably
    for branch in (block.conv1x1_3x3, block.conv1x1_sbx, block.conv1x1_sby, block.conv1x1_lpl):
        assert branch.rep_params()[0].abs().max() > 1e-2


def test_deploy_is_identity_without_training_form():
    model = build_model("fsrcnn", 2)
    assert deploy(model) is model
    assert deploy(build_model("bicubic", 2)) is not None


def test_deploy_keeps_mode():
    model = build_model("ecbsr", 2, blocks=1, width=4).train()
    assert deploy(model).training
    assert not deploy(model.eval()).training


@pytest.mark.parametrize("call,needle", [
    (lambda: build_model("srgan", 2), "unknown model 'srgan'"),
    (lambda: build_model("fsrcnn", 5), "supports scales 2, 3, 4, not 5"),
    (lambda: build_model("fsrcnn", 2.0), "scale must be an integer"),
    (lambda: build_model("fsrcnn", 2, depth=3), "has no setting 'depth'"),
    (lambda: build_model("fsrcnn", 2, d=0), "'d' must be an integer >= 1"),
    (lambda: build_model("espcn", 2, act="gelu"), "'act' must be one of tanh, relu"),
    (lambda: build_model("ecbsr", 2, with_idt="yes"), "'with_idt' must be true or false"),
    (lambda: build_model("ecbsr", 2, width=object()), "plain data"),
])
def test_bad_build_arguments(call, needle):
    with pytest.raises(InputError) as err:
        call()
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_register_decorator_adds_and_refuses_duplicates():
    name = "test_tiny_registry_model"

    def factory(scale: int, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    try:
        register(name)(factory)
        assert name in list_models()
        model = build_model(name, 5, width=2)
        assert model.scale == 5 and model.arch == {"name": name, "scale": 5, "config": {"width": 2}}
        assert model(torch.rand(1, 3, 2, 2)).shape == (1, 3, 10, 10)
        with pytest.raises(ValueError):
            register(name)(factory)
    finally:
        registry_mod._REGISTRY.pop(name, None)
    with pytest.raises(TypeError):
        register("test_bad_factory")(lambda width: nn.Identity())


def test_resolve_registered_name_is_seeded_and_leaves_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    m1, info = resolve_model("fsrcnn", 2)
    m2, _ = resolve_model("fsrcnn", 2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert isinstance(info, ModelInfo) and info.source == "registry" and info.scale == 2 and info.path is None
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    m3, _ = resolve_model("fsrcnn", 2, seed=1)
    assert not torch.equal(m1.feature[0].weight, m3.feature[0].weight)


def test_resolve_errors_and_files(tmp_path):
    with pytest.raises(InputError, match="--scale is required"):
        resolve_model("espcn", None)
    with pytest.raises(InputError, match="unknown model 'nosuch'"):
        resolve_model("nosuch", 2)
    with pytest.raises(InputError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.pt"), 2)
    path = tmp_path / "m.pt"
    save_model(path, build_model("espcn", 2), meta={"psnr": 30.1})
    model, info = resolve_model(str(path), None)
    assert info.source == "file" and info.scale == 2 and info.meta == {"psnr": 30.1} and model.scale == 2
    assert resolve_model(str(path), 2)[1].name == "espcn"
    with pytest.raises(InputError) as err:
        resolve_model(str(path), 3)
    assert f"model {path} is for x2, not x3" == str(err.value)
