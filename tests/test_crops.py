"""The report's crop chooser (srprune/crops.py) on synthetic images whose detailed region is known."""

from __future__ import annotations

import numpy as np

from srprune.crops import choose_crops, window_means


def _scene() -> tuple[np.ndarray, tuple[int, int, int]]:
    """Dark left half, bright right half (a strong edge, flat otherwise) and one textured 96x96 square."""
    rng = np.random.default_rng(0)
    img = np.full((256, 384, 3), 20, np.uint8)
    img[:, 192:] = 220
    y0, x0, n = 150, 30, 96
    img[y0:y0 + n, x0:x0 + n] = rng.integers(0, 120, (n, n, 1), dtype=np.uint8)  # grey texture in the dark half
    return img, (y0, x0, n)


def test_window_means_match_brute_force():
    v = np.random.default_rng(1).random((50, 70))
    ys, xs, means = window_means(v, 16, 5)
    assert ys[-1] == 50 - 16 and xs[-1] == 70 - 16  # windows flush with the far borders are offered
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            assert np.isclose(means[i, j], v[y:y + 16, x:x + 16].mean())


def test_detail_crops_land_on_the_textured_region_not_on_the_edge():
    img, (y0, x0, n) = _scene()
    crops = choose_crops(img, size=64, detail=2, difference=0)
    assert len(crops) == 2 and all(c.why == "detail" for c in crops)
    first = crops[0]
    assert y0 <= first.y and first.y + 64 <= y0 + n and x0 <= first.x and first.x + 64 <= x0 + n
    # the old rule (largest brightness variance) picks a window across the dark/bright edge instead
    gray = img.astype(np.float64).mean(axis=2)
    _, xs, var = window_means(gray ** 2, 64, 16)
    _, _, mean = window_means(gray, 64, 16)
    i, j = np.unravel_index(np.argmax(var - mean ** 2), var.shape)
    assert xs[j] < 192 < xs[j] + 64  # so this test tells the two rules apart


def test_difference_crop_is_where_model_and_bicubic_differ_and_crops_do_not_overlap():
    img, _ = _scene()
    bicubic = img.copy()
    model = img.copy()
    model[20:84, 250:314] = np.clip(model[20:84, 250:314].astype(int) + 30, 0, 255).astype(np.uint8)
    crops = choose_crops(img, bicubic, model, size=64, detail=2, difference=1)
    assert [c.why for c in crops] == ["detail", "detail", "difference"]
    diff = crops[2]
    assert (diff.y, diff.x) == (20, 250) or (abs(diff.y - 20) < 16 and abs(diff.x - 250) < 16)
    for a in crops:
        for b in crops:
            if a is not b:
                assert abs(a.y - b.y) >= 64 or abs(a.x - b.x) >= 64


def test_small_images_give_what_fits():
    img = np.random.default_rng(2).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    crops = choose_crops(img, img, img, size=128)
    assert len(crops) == 1 and crops[0].size == 40  # one window as large as the image, nothing else fits
