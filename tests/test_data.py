"""Datasets, the patch sampler and `srprune data prepare`, checked against the protocol's own definition.

References are independent of srprune.data: LR images are compared with
to_uint8(imresize(mod_crop(hr, s), 1/s)) computed here, patches with crops and
flips done here in torch, and fake DIV2K/benchmark trees are written here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from srprune.data import ImagePair, PatchSampler, builtin_names, load_dataset
from srprune.data.cache import lr_cache_path
from srprune.errors import InputError
from srprune.imresize import imresize, mod_crop, to_uint8
from tests.conftest import invoke_main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own empty LR cache (never the user's ~/.cache)."""
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "cache"))


def ref_lr(hr: np.ndarray, s: int) -> np.ndarray:
    """The protocol, spelled out: mod-crop, MATLAB bicubic 1/s, round to uint8."""
    return to_uint8(imresize(mod_crop(hr, s), 1 / s))


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write RGB with OpenCV directly (not through srprune), as a user's tool would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


# Small HR images cut from scikit-image photographs (odd sizes, so mod-crop matters).
HR_A = skdata.astronaut()[100:163, 150:251]  # 63 x 101
HR_B = skdata.coffee()[50:121, 200:289]  # 71 x 89
HR_C = skdata.chelsea()[60:119, 100:173]  # 59 x 73


# ----------------------------------------------------------------------------- builtin


def test_builtin_split_is_fixed_disjoint_and_follows_the_protocol():
    val = load_dataset("builtin", 3, "val")
    train_names = builtin_names("train")
    assert [p.name for p in val] == ["astronaut", "chelsea"]
    assert not set(train_names) & {"astronaut", "chelsea"}
    assert {"motorcycle_left", "motorcycle_right"} <= set(train_names)  # stereo pair on one side
    assert set(builtin_names("all")) == set(train_names) | {"astronaut", "chelsea"}
    chelsea = val[1]
    assert chelsea.hr.shape == (300, 450, 3)  # 300 x 451 mod-cropped to x3
    assert chelsea.lr.shape == (100, 150, 3)
    np.testing.assert_array_equal(chelsea.hr, skdata.chelsea()[:, :450])
    np.testing.assert_array_equal(chelsea.lr, ref_lr(skdata.chelsea(), 3))
    np.testing.assert_array_equal(val[0].lr, ref_lr(skdata.astronaut(), 3))
    again = load_dataset("builtin", 3, "val")  # now from the cache: identical
    assert all(np.array_equal(a.lr, b.lr) and np.array_equal(a.hr, b.hr) for a, b in zip(val, again))


def test_builtin_bad_split():
    with pytest.raises(InputError, match="unknown split 'test'"):
        load_dataset("builtin", 2, "test")


@pytest.mark.parametrize("scale", [1, 0, "2", 2.0, True])
def test_bad_scale(scale):
    with pytest.raises(InputError, match="scale must be an integer >= 2"):
        load_dataset("builtin", scale, "val")


# ----------------------------------------------------------------------------- HR folder + cache


def test_hr_folder_makes_lr_by_protocol_and_caches_outside_the_folder(tmp_path):
    folder = tmp_path / "photos"
    write_png(folder / "a.png", HR_A)
    write_png(folder / "b.png", HR_B)
    before = sorted(os.listdir(folder))
    pairs = load_dataset(str(folder), 2)
    assert [p.name for p in pairs] == ["a", "b"]
    for pair, hr in zip(pairs, (HR_A, HR_B)):
        assert pair.hr.shape[0] % 2 == 0 and pair.hr.shape[1] % 2 == 0
        np.testing.assert_array_equal(pair.hr, mod_crop(hr, 2))
        np.testing.assert_array_equal(pair.lr, ref_lr(hr, 2))
    assert sorted(os.listdir(folder)) == before  # nothing written into the user's folder
    cached = lr_cache_path(pairs[0].hr, 2)
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "cache"))
    np.testing.assert_array_equal(read_png(cached), ref_lr(HR_A, 2))


def test_damaged_cache_entry_is_recomputed(tmp_path):
    folder = tmp_path / "photos"
    write_png(folder / "a.png", HR_A)
    first = load_dataset(str(folder), 3)[0]
    cached = lr_cache_path(first.hr, 3)
    cached.write_bytes(b"not a png at all")
    again = load_dataset(str(folder), 3)[0]
    np.testing.assert_array_equal(again.lr, ref_lr(HR_A, 3))
    np.testing.assert_array_equal(read_png(cached), ref_lr(HR_A, 3))  # repaired


def test_grayscale_and_rgba_are_converted_with_a_note(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = cv2.cvtColor(HR_A[..., ::-1].copy(), cv2.COLOR_BGR2GRAY)
    assert cv2.imwrite(str(folder / "g.png"), gray)
    rgba = np.concatenate([HR_B, np.full(HR_B.shape[:2] + (1,), 128, np.uint8)], axis=2)
    assert cv2.imwrite(str(folder / "r.png"), rgba[..., [2, 1, 0, 3]])
    pairs = {p.name: p for p in load_dataset(str(folder), 2)}
    err = capsys.readouterr().err
    assert "g.png is grayscale" in err and "r.png has an alpha channel" in err
    g = pairs["g"].hr
    assert g.shape == (62, 100, 3) and np.array_equal(g[..., 0], g[..., 2])
    np.testing.assert_array_equal(g[..., 0], mod_crop(gray, 2))
    np.testing.assert_array_equal(pairs["r"].hr, mod_crop(HR_B, 2))
    np.testing.assert_array_equal(pairs["r"].lr, ref_lr(HR_B, 2))


# ----------------------------------------------------------------------------- paired layouts


def make_div2k(root: Path, lr_maker) -> None:
    """DIV2K_train_HR/0001.png, 0002.png and their LR files named 0001x2.png."""
    for name, hr in (("0001", HR_A), ("0002", HR_B)):
        write_png(root / "DIV2K_train_HR" / f"{name}.png", hr)
        write_png(root / "DIV2K_train_LR_bicubic" / "X2" / f"{name}x2.png", lr_maker(mod_crop(hr, 2), 2))


def area_lr(hr: np.ndarray, s: int) -> np.ndarray:
    """A right-sized LR that is NOT the protocol's, to prove the loader reads the files."""
    return cv2.resize(hr, (hr.shape[1] // s, hr.shape[0] // s), interpolation=cv2.INTER_AREA)


def test_div2k_root_reads_lr_files(tmp_path):
    make_div2k(tmp_path, area_lr)
    for spec in (tmp_path, tmp_path / "DIV2K_train_HR"):
        pairs = load_dataset(str(spec), 2, "train")
        assert [p.name for p in pairs] == ["0001", "0002"]
        np.testing.assert_array_equal(pairs[0].lr, area_lr(mod_crop(HR_A, 2), 2))
        np.testing.assert_array_equal(pairs[1].hr, mod_crop(HR_B, 2))
    with pytest.raises(InputError, match="no DIV2K_valid_HR folder"):
        load_dataset(str(tmp_path), 2, "val")


def test_div2k_missing_scale_falls_back_to_protocol(tmp_path, capsys):
    make_div2k(tmp_path, area_lr)
    pairs = load_dataset(str(tmp_path), 3, "train")
    assert "making x3 LR images by the protocol" in capsys.readouterr().err
    np.testing.assert_array_equal(pairs[1].lr, ref_lr(HR_B, 3))


def make_set(root: Path, name: str, scale: int, same_name: bool = False) -> None:
    """A benchmark set: NAME/HR/x.png and NAME/LR_bicubic/X<s>/xx<s>.png (or x.png)."""
    for stem, hr in (("baby", HR_A), ("bird", HR_C)):
        write_png(root / name / "HR" / f"{stem}.png", hr)
        lr_name = f"{stem}.png" if same_name else f"{stem}x{scale}.png"
        write_png(root / name / "LR_bicubic" / f"X{scale}" / lr_name, area_lr(mod_crop(hr, scale), scale))


@pytest.mark.parametrize("same_name", [False, True])
def test_benchmark_set_both_naming_patterns(tmp_path, same_name):
    make_set(tmp_path, "Set5", 3, same_name)
    pairs = load_dataset(str(tmp_path / "Set5"), 3)
    assert [p.name for p in pairs] == ["baby", "bird"]
    np.testing.assert_array_equal(pairs[1].lr, area_lr(mod_crop(HR_C, 3), 3))
    assert pairs[1].hr.shape == (57, 72, 3) and pairs[1].lr.shape == (19, 24, 3)


def test_root_with_several_sets_asks_for_one(tmp_path):
    make_set(tmp_path / "benchmark", "Set5", 2)
    make_set(tmp_path / "benchmark", "Set14", 2)
    with pytest.raises(InputError, match=r"several benchmark sets \(Set14, Set5\); pass one"):
        load_dataset(str(tmp_path), 2)


def test_lr_of_wrong_size_names_the_file(tmp_path):
    make_set(tmp_path, "Set5", 2)
    bad = tmp_path / "Set5" / "LR_bicubic" / "X2" / "birdx2.png"
    write_png(bad, HR_C[:20, :30])
    with pytest.raises(InputError, match=r"birdx2.png: LR is 30x20, expected 36x29 \(HR 72x58 / x2\)"):
        load_dataset(str(tmp_path / "Set5"), 2)


def test_missing_lr_file_names_the_hr_file(tmp_path):
    make_set(tmp_path, "Set5", 2)
    (tmp_path / "Set5" / "LR_bicubic" / "X2" / "babyx2.png").unlink()
    with pytest.raises(InputError, match=r"X2: no LR image for baby.png \(expected babyx2.png\)"):
        load_dataset(str(tmp_path / "Set5"), 2)


# ----------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="nope: no such file or folder"):
        load_dataset(str(tmp_path / "nope"), 2)


def test_file_instead_of_folder(tmp_path):
    write_png(tmp_path / "a.png", HR_A)
    with pytest.raises(InputError, match="a.png: is a file"):
        load_dataset(str(tmp_path / "a.png"), 2)


def test_empty_folder_and_non_images(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="d: no image files found"):
        load_dataset(str(tmp_path / "d"), 2)
    write_png(tmp_path / "d" / "a.png", HR_A)
    assert [p.name for p in load_dataset(str(tmp_path / "d"), 2)] == ["a"]
    assert "skipped 1 non-image file(s): notes.txt" in capsys.readouterr().err


def test_unreadable_image_names_the_file(tmp_path):
    write_png(tmp_path / "d" / "a.png", HR_A)
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        load_dataset(str(tmp_path / "d"), 2)
    (tmp_path / "d" / "broken.png").unlink()
    (tmp_path / "d" / "dir.png").mkdir()
    with pytest.raises(InputError, match="dir.png: is a folder, not an image"):
        load_dataset(str(tmp_path / "d"), 2)


def test_dangling_link_names_the_file(tmp_path):
    write_png(tmp_path / "d" / "a.png", HR_A)
    (tmp_path / "d" / "gone.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="gone.png: no such file"):
        load_dataset(str(tmp_path / "d"), 2)


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / "blocker"))
    write_png(tmp_path / "d" / "a.png", HR_A)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "d"), 2)[0].lr, ref_lr(HR_A, 2))


def test_image_smaller_than_the_scale(tmp_path):
    write_png(tmp_path / "d" / "tiny.png", HR_A[:1, :5])
    with pytest.raises(InputError, match=r"tiny.png: image is 5x1, smaller than the scale x2"):
        load_dataset(str(tmp_path / "d"), 2)


def test_sampler_refuses_images_smaller_than_the_patch():
    pairs = [ImagePair("small", mod_crop(HR_A, 2), ref_lr(HR_A, 2))]  # LR 50 x 31
    with pytest.raises(InputError, match=r"small: LR image is 50x31, smaller than the 32x32 patch"):
        PatchSampler(pairs, 2, 32, 4, seed=0)
    with pytest.raises(InputError, match="at least one image pair"):
        PatchSampler([], 2, 16, 4, seed=0)
    with pytest.raises(InputError, match="patch_size must be a positive integer"):
        PatchSampler(pairs, 2, 0, 4, seed=0)
    with pytest.raises(InputError, match=r"small: LR is 50x31, expected 25x15"):
        PatchSampler(pairs, 4, 8, 4, seed=0)


# ----------------------------------------------------------------------------- sampler


@pytest.fixture(scope="module")
def train_pairs() -> list[ImagePair]:
    """Four small protocol pairs (x2) from different photographs."""
    srcs = [skdata.astronaut()[:120, :160], skdata.coffee()[100:200, 50:250],
            skdata.rocket()[200:300, 300:420], skdata.chelsea()[:90, :140]]
    return [ImagePair(f"img{i}", mod_crop(hr, 2), ref_lr(hr, 2)) for i, hr in enumerate(srcs)]


def reference_patch(img: np.ndarray, top: int, left: int, size: int, spec) -> torch.Tensor:
    """Crop with numpy, transform with torch ops (independent of the sampler's numpy views)."""
    t = torch.from_numpy(img[top: top + size, left: left + size].copy()).permute(2, 0, 1).float() / 255
    if spec.vflip:
        t = torch.flip(t, dims=[1])
    if spec.hflip:
        t = torch.flip(t, dims=[2])
    if spec.transpose:
        t = t.transpose(1, 2)
    return t


def test_batches_are_the_drawn_crops_transformed_alike(train_pairs):
    s, p = 2, 24
    sampler = PatchSampler(train_pairs, s, p, batch_size=32, seed=7)
    specs = sampler.draw()
    lr, hr = sampler.assemble(specs)
    assert lr.shape == (32, 3, p, p) and hr.shape == (32, 3, p * s, p * s)
    assert lr.dtype == hr.dtype == torch.float32 and lr.is_contiguous() and hr.is_contiguous()
    for k, sp in enumerate(specs):
        pair = train_pairs[sp.image]
        assert 0 <= sp.y <= pair.lr.shape[0] - p and 0 <= sp.x <= pair.lr.shape[1] - p
        torch.testing.assert_close(lr[k], reference_patch(pair.lr, sp.y, sp.x, p, sp), rtol=0, atol=0)
        torch.testing.assert_close(hr[k], reference_patch(pair.hr, sp.y * s, sp.x * s, p * s, sp), rtol=0, atol=0)


def test_every_patch_pair_obeys_the_protocol(train_pairs):
    """Downscaling each HR patch by the protocol gives its LR patch away from the patch border.

    Catches any misalignment or a flip applied to one side only: those move
    content by at least one LR pixel and give errors of tens of grey levels.
    """
    s, p, border = 2, 24, 3  # the x2 kernel reaches 2 LR pixels; 3 leaves a margin
    sampler = PatchSampler(train_pairs, s, p, batch_size=48, seed=1)
    lr, hr = next(sampler)
    for k in range(lr.shape[0]):
        hr_u8 = (hr[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lr_u8 = (lr[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        down = to_uint8(imresize(hr_u8, 1 / s))
        diff = np.abs(down.astype(int) - lr_u8.astype(int))[border:-border, border:-border]
        assert diff.max() <= 1, f"patch {k}: max diff {diff.max()}"


def test_augmentation_uses_all_eight_symmetries_and_can_be_off(train_pairs):
    on = PatchSampler(train_pairs, 2, 16, batch_size=64, seed=3)
    seen = {(sp.vflip, sp.hflip, sp.transpose) for _ in range(4) for sp in on.draw()}
    assert len(seen) == 8
    off = PatchSampler(train_pairs, 2, 16, batch_size=64, seed=3, augment=False)
    specs = off.draw()
    assert not any(sp.vflip or sp.hflip or sp.transpose for sp in specs)
    assert {sp.image for sp in specs} == {0, 1, 2, 3}


def test_same_seed_same_batches_other_seed_other_batches(train_pairs):
    a = PatchSampler(train_pairs, 2, 16, 8, seed=11)
    b = PatchSampler(train_pairs, 2, 16, 8, seed=11)
    c = PatchSampler(train_pairs, 2, 16, 8, seed=12)
    for _ in range(3):
        (la, ha), (lb, hb), (lc, _) = next(a), next(b), next(c)
        assert torch.equal(la, lb) and torch.equal(ha, hb)
        assert not torch.equal(la, lc)


def test_resume_from_state_dict_continues_exactly(train_pairs, tmp_path):
    run = PatchSampler(train_pairs, 2, 16, 8, seed=5)
    for _ in range(3):
        next(run)
    torch.save({"sampler": run.state_dict()}, tmp_path / "ckpt.pt")
    expected = [next(run) for _ in range(3)]
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["sampler"]
    json.dumps(state)  # plain data, so it can also live in a JSON log
    resumed = PatchSampler(train_pairs, 2, 16, 8, seed=999)  # seed is restored from the state
    resumed.load_state_dict(state)
    assert resumed.batches == 3
    for (le, he), (lr, hr) in zip(expected, (next(resumed) for _ in range(3))):
        assert torch.equal(le, lr) and torch.equal(he, hr)
    other = PatchSampler(train_pairs, 2, 16, 4, seed=5)
    with pytest.raises(InputError, match="saved with batch_size=8, this sampler has 4"):
        other.load_state_dict(state)
    with pytest.raises(InputError, match="not a patch sampler state"):
        other.load_state_dict({"rng": 1})


# ----------------------------------------------------------------------------- srprune data prepare


def run_cli(*args: str):
    return invoke_main("data", "prepare", *args)


def make_raw_tree(root: Path) -> None:
    """DIV2K train HR and Set5 HR only, no LR at all (Set5 inside benchmark/)."""
    write_png(root / "DIV2K_train_HR" / "0001.png", HR_A)
    write_png(root / "DIV2K_train_HR" / "0002.png", HR_B)
    write_png(root / "benchmark" / "Set5" / "HR" / "baby.png", HR_C)
    write_png(root / "benchmark" / "Set5" / "HR" / "bird.png", HR_B)


def test_prepare_builds_lr_sets_by_the_protocol(tmp_path):
    make_raw_tree(tmp_path)
    res = run_cli(str(tmp_path), "--scales", "2,3")
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert "missing" in rows["DIV2K_train"] and "missing" in rows["Set5"]
    assert "not found" in rows["Set14"] and "not found" in rows["DIV2K_valid"]
    assert "wrote 8 LR file(s)" in res.output
    for s in (2, 3):
        for name, hr in (("0001", HR_A), ("0002", HR_B)):
            out = tmp_path / "DIV2K_train_LR_bicubic" / f"X{s}" / f"{name}x{s}.png"
            np.testing.assert_array_equal(read_png(out), ref_lr(hr, s))
        out = tmp_path / "benchmark" / "Set5" / "LR_bicubic" / f"X{s}" / f"babyx{s}.png"
        np.testing.assert_array_equal(read_png(out), ref_lr(HR_C, s))
    # The built tree loads as a paired dataset and agrees with the protocol.
    pairs = load_dataset(str(tmp_path / "benchmark" / "Set5"), 3)
    np.testing.assert_array_equal(pairs[1].lr, ref_lr(HR_B, 3))
    again = run_cli(str(tmp_path), "--scales", "2,3")
    assert again.exit_code == 0 and "nothing to build" in again.output and "ok 2/2" in again.output


def test_prepare_fills_incomplete_sets_and_never_overwrites_without_force(tmp_path):
    make_raw_tree(tmp_path)
    assert run_cli(str(tmp_path), "--scales", "2").exit_code == 0
    x2 = tmp_path / "DIV2K_train_LR_bicubic" / "X2"
    (x2 / "0002x2.png").unlink()
    mine = area_lr(mod_crop(HR_A, 2), 2)  # right size, other content: the user's own file
    write_png(x2 / "0001x2.png", mine)
    res = run_cli(str(tmp_path), "--scales", "2")
    assert res.exit_code == 0, res.output
    assert "incomplete 1/2" in res.output and "wrote 1 LR file(s)" in res.output
    np.testing.assert_array_equal(read_png(x2 / "0001x2.png"), mine)  # kept
    np.testing.assert_array_equal(read_png(x2 / "0002x2.png"), ref_lr(HR_B, 2))
    res = run_cli(str(tmp_path), "--scales", "2", "--force")
    assert res.exit_code == 0 and "wrote 4 LR file(s)" in res.output
    np.testing.assert_array_equal(read_png(x2 / "0001x2.png"), ref_lr(HR_A, 2))


def test_prepare_reports_wrong_size_and_keeps_it_without_force(tmp_path):
    make_raw_tree(tmp_path)
    assert run_cli(str(tmp_path), "--scales", "2").exit_code == 0
    bad = tmp_path / "benchmark" / "Set5" / "LR_bicubic" / "X2" / "birdx2.png"
    write_png(bad, HR_C[:10, :10])
    before = bad.read_bytes()
    res = run_cli(str(tmp_path), "--scales", "2")
    assert res.exit_code == 2
    assert "bad: 1 wrong size" in res.output
    assert "error: 1 LR file(s) have the wrong size, e.g. " in res.output and "birdx2.png" in res.output
    assert "Traceback" not in res.output
    assert bad.read_bytes() == before
    res = run_cli(str(tmp_path), "--scales", "2", "--force")
    assert res.exit_code == 0
    np.testing.assert_array_equal(read_png(bad), ref_lr(HR_B, 2))


def test_prepare_check_only_writes_nothing(tmp_path):
    make_raw_tree(tmp_path)
    res = run_cli(str(tmp_path), "--check")
    assert res.exit_code == 0 and "X4" in res.output
    assert not (tmp_path / "DIV2K_train_LR_bicubic").exists()


def test_prepare_bad_hr_file_stops_before_writing(tmp_path):
    make_raw_tree(tmp_path)
    assert run_cli(str(tmp_path), "--scales", "2").exit_code == 0
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*.png")}
    (tmp_path / "DIV2K_train_HR" / "0003.png").write_bytes(b"garbage")
    (tmp_path / "DIV2K_train_HR" / "0004.png").write_bytes(b"")
    res = run_cli(str(tmp_path), "--scales", "2,3")
    assert res.exit_code == 2 and "0003.png: not a readable image" in res.output
    assert "Traceback" not in res.output
    after = {p: p.read_bytes() for p in tmp_path.rglob("*.png") if p.name not in ("0003.png", "0004.png")}
    assert after == snapshot  # nothing changed, nothing new (no X3 written)


def test_prepare_hr_smaller_than_scale(tmp_path):
    make_raw_tree(tmp_path)
    write_png(tmp_path / "DIV2K_train_HR" / "0009.png", HR_A[:3, :3])
    res = run_cli(str(tmp_path), "--scales", "2,4")
    assert res.exit_code == 2 and "0009.png: image is 3x3, smaller than the scale x4" in res.output


@pytest.mark.parametrize("args,message", [
    (["--scales", "2,x"], "--scales: expected comma-separated integers"),
    (["--scales", "1"], "--scales: scale 1 is out of range"),
])
def test_prepare_bad_scales(tmp_path, args, message):
    make_raw_tree(tmp_path)
    res = run_cli(str(tmp_path), *args)
    assert res.exit_code == 2 and message in res.output


def test_prepare_bad_roots(tmp_path):
    res = run_cli(str(tmp_path / "nope"))
    assert res.exit_code == 2 and "nope: no such folder" in res.output
    res = run_cli(str(tmp_path))
    assert res.exit_code == 2 and "found none of DIV2K_train_HR" in res.output


def test_prepare_through_the_real_entry_point(tmp_path):
    """The console entry point prints one `error:` line, exit 2, no traceback."""
    import subprocess
    import sys

    code = "import srprune.cli.data_cmd; from srprune.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "data", "prepare", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such folder"]
