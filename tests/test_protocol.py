"""The SR benchmark protocol: MATLAB bicubic, PSNR-Y and SSIM-Y against BasicSR 1.4.2's figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srprune.errors import InputError
from srprune.imresize import imresize, imresize_tensor, mod_crop, resize_matrix, to_uint8
from srprune.metrics import psnr, rgb_to_y, ssim

# Computed with BasicSR 1.4.2's own code (issue 2): HR = scikit-image image mod-cropped, LR = our bicubic
# downscale rounded to uint8, SR = our bicubic upscale of LR rounded to uint8.
BASICSR_FIGURES = [
    # image, scale, LR (W, H), LR mean, PSNR-Y, SSIM-Y
    ("astronaut", 2, (256, 256), 114.6035, 31.7127, 0.9458),
    ("coffee", 2, (300, 200), 98.6152, 30.5966, 0.8861),
    ("chelsea", 4, (112, 75), 115.2237, 31.4758, 0.8064),
    ("rocket", 4, (160, 106), 65.1801, 29.9950, 0.8533),
]


@pytest.mark.parametrize("name,scale,lr_wh,lr_mean,psnr_y,ssim_y", BASICSR_FIGURES)
def test_bicubic_protocol_matches_basicsr(name, scale, lr_wh, lr_mean, psnr_y, ssim_y):
    hr = mod_crop(getattr(data, name)(), scale)
    lr = to_uint8(imresize(hr, 1 / scale))
    sr = to_uint8(imresize(lr, scale))
    assert (lr.shape[1], lr.shape[0]) == lr_wh
    assert lr.mean() == pytest.approx(lr_mean, abs=1e-3)
    assert sr.shape == hr.shape
    assert psnr(sr, hr, crop_border=scale) == pytest.approx(psnr_y, abs=0.01)
    assert ssim(sr, hr, crop_border=scale) == pytest.approx(ssim_y, abs=0.001)


def test_resize_matrix_rows_sum_to_one_and_keep_constants():
    for n_in, n_out, s in [(10, 20, 2.0), (30, 10, 1 / 3), (7, 28, 4.0), (101, 25, 0.25)]:
        m = resize_matrix(n_in, n_out, s)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    img = np.full((9, 13, 3), 77, np.uint8)
    np.testing.assert_allclose(imresize(img, 3), 77.0, atol=1e-9)


def test_upscale_by_two_matches_keys_kernel_by_hand():
    """x2 upscaling samples the Keys cubic at distances 0.25/0.75 (+/-1): check one interior pixel by formula."""
    x = np.arange(16, dtype=np.float64).reshape(1, 16) ** 2
    out = imresize(x, size=(1, 32), antialiasing=True)

    def keys(t: float) -> float:
        t = abs(t)
        return 1.5 * t**3 - 2.5 * t**2 + 1 if t <= 1 else (-0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t <= 2 else 0.0)

    # Output pixel j (0-based) maps to input coordinate (j + 0.5) / 2 - 0.5; take j = 10 -> 4.75.
    u = (10 + 0.5) / 2 - 0.5
    taps = range(int(math.floor(u)) - 1, int(math.floor(u)) + 3)
    expected = sum(keys(u - i) * x[0, i] for i in taps)
    assert out[0, 10] == pytest.approx(expected, abs=1e-9)


def test_tensor_resize_equals_numpy_resize():
    hr = mod_crop(data.astronaut()[:120, :90], 3)
    want = imresize(hr, 1 / 3)
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].double()
    got = imresize_tensor(t, 1 / 3)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)
    up = imresize_tensor(t.float() / 255, scale=2)
    assert up.shape == (1, 3, 240, 180)


def test_output_size_follows_matlab_ceil():
    img = np.zeros((75, 113), np.float64)
    assert imresize(img, 1 / 4).shape == (19, 29)  # ceil(18.75), ceil(28.25)
    assert imresize(img, size=(10, 12)).shape == (10, 12)


def test_bad_resize_arguments():
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), scale=None, size=None)
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), scale=-2)
    with pytest.raises(InputError):
        imresize(np.zeros((2, 2, 2, 2)), scale=2)


def test_y_channel_formula_endpoints():
    assert rgb_to_y(np.array([0, 0, 0])) == pytest.approx(16.0)
    assert rgb_to_y(np.array([255, 255, 255])) == pytest.approx(235.0)
    assert rgb_to_y(np.array([255, 0, 0])) == pytest.approx(16 + 65.481)


def test_psnr_and_ssim_agree_with_scikit_image():
    rng = np.random.default_rng(0)
    hr = data.coffee()[:96, :128]
    sr = np.clip(hr.astype(int) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
    b = 4
    y_sr, y_hr = rgb_to_y(sr)[b:-b, b:-b], rgb_to_y(hr)[b:-b, b:-b]
    assert psnr(sr, hr, b) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-9)
    ref = structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(sr, hr, b) == pytest.approx(ref, abs=1e-6)
    ref_rgb = structural_similarity(hr[b:-b, b:-b].astype(float), sr[b:-b, b:-b].astype(float), data_range=255,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=2)
    assert ssim(sr, hr, b, y_channel=False) == pytest.approx(ref_rgb, abs=1e-6)
    ref_psnr_rgb = peak_signal_noise_ratio(hr[b:-b, b:-b], sr[b:-b, b:-b], data_range=255)
    assert psnr(sr, hr, b, y_channel=False) == pytest.approx(ref_psnr_rgb, abs=1e-9)


def test_identical_images_and_bad_shapes():
    img = data.chelsea()[:40, :40]
    assert psnr(img, img, 2) == math.inf
    assert ssim(img, img, 2) == pytest.approx(1.0)
    with pytest.raises(InputError, match="shapes differ"):
        psnr(img, img[:-1], 2)
    with pytest.raises(InputError, match="smaller than the 11x11"):
        ssim(img[:14, :14], img[:14, :14], 2)
