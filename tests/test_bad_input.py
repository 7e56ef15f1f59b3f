"""Classes of bad input at the CLI's edge: each ends as one `error:` line, exit 2, before any work.

One test per class (usage errors, file-system errors, the pixel limit, sizes that are not a multiple
of the scale, foreign pickles); the config and supernet-checkpoint classes are in test_search.py and
test_supernet_cli.py beside the code they exercise.
"""

from __future__ import annotations

import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest
from skimage import data

from tests.conftest import assert_one_line_error


def huge_png(path, width: int, height: int) -> None:
    """A PNG whose valid IHDR claims `width` x `height` (the pixel data is a few bytes): a decoding bomb."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), data.astronaut()[:24, :32, ::-1])
    return path


def test_library_errors_are_plain_exceptions():
    """Library code does not depend on click: InputError is an ordinary exception the CLI maps."""
    import click

    from srprune.errors import InputError
    from supernet.errors import CheckpointError, SpaceError

    assert not issubclass(InputError, click.ClickException)
    assert issubclass(CheckpointError, SpaceError)


@pytest.mark.parametrize("args, fragment", [
    (("upscale",), "Missing argument 'MODEL'"),                                   # missing argument
    (("upscale", "m", "a", "b", "--scale", "9"), "Invalid value for '--scale'"),  # bad option value
    (("upscale", "m", "a", "b", "--bogus"), "No such option '--bogus'"),          # unknown option
    (("supernet", "sample", "--kind", "nope"), "'nope' is not one of"),           # bad choice
    (("no-such-command",), "No such command"),                                    # unknown command
])
def test_usage_errors_are_one_line(run_cli, args, fragment):
    assert_one_line_error(run_cli(*args), fragment, "--help", alone=True)


def test_help_and_bare_groups_still_show_help(run_cli):
    for args in (("upscale", "--help"), ("supernet",), ()):
        r = run_cli(*args)
        assert r.code == 0 and "Usage:" in r.out and not r.err, (args, r.err)


def test_os_error_message_names_the_path():
    from srprune.cli import error_message

    assert error_message(PermissionError(13, "Permission denied", "/x/out.png")) == "/x/out.png: Permission denied"
    assert error_message(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == "/a -> /b: Invalid cross-device link"


def test_file_system_errors_are_one_line_before_any_work(run_cli, model_x2, image, tmp_path):
    """Outputs that can never be written, models that cannot be read, a run folder that is a file."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), data.astronaut()[:16, :16, ::-1])
    cases = [
        (("upscale", model_x2, image, "/proc/srprune-test/out.png"), "cannot write in /proc"),
        (("upscale", model_x2, folder, afile), "is a file, not a folder"),             # folder in, file out
        (("upscale", model_x2, image, afile / "out.png"), "is a file, not a folder"),  # parent is a file
        (("upscale", model_x2, image, folder), "is a folder, not a file"),
        (("eval", "bicubic", "-s", "2", "--data", folder, "--json", "/proc/srprune-test.json"), "/proc"),
        (("eval", "bicubic", "-s", "2", "--data", folder, "--save-images", afile / "sr"), "is a file"),
        (("train", "espcn", "-s", "2", "--data", folder, "-o", afile / "run"), "is a file"),
        (("prune", model_x2, "--spec", "{}", "-o", "/proc/srprune-test.pt"), "/proc"),
        (("info", folder), "is not a file"),                                          # a folder as model
        (("info", afile / "m.pt"), "does not exist"),                                 # a path inside a file
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli(*args), fragment, alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["espcn_x2.pt", "images", "in.png", "notes.txt"]
    assert afile.read_text() == "mine"


def test_run_dir_that_is_a_file_is_refused(tmp_path):
    from srprune.errors import InputError
    from srprune.search.config import resolve

    afile = tmp_path / "run"
    afile.write_text("mine")
    with pytest.raises(InputError, match="run_dir .* is a file, not a folder"):
        resolve({"budget_ms": 10, "run_dir": str(afile)})


def test_pixel_limit_is_checked_from_the_header_before_decoding(run_cli, model_x2, image, tmp_path, monkeypatch):
    """A header claiming 100000x100000 (and a 20000x20000 one for upscale) in every command that reads images."""
    bomb = tmp_path / "bomb" / "huge.png"
    huge_png(bomb, 100_000, 100_000)
    big = tmp_path / "big.png"
    huge_png(big, 20_000, 20_000)
    div2k = tmp_path / "div2k" / "DIV2K_train_HR" / "0001.png"
    huge_png(div2k, 100_000, 100_000)
    cases = [
        (("upscale", model_x2, bomb, tmp_path / "o1.png"), "over the pixel limit"),
        (("upscale", model_x2, big, tmp_path / "o2.png"), "40000x40000"),
        (("eval", "bicubic", "-s", "2", "--data", bomb.parent), "100000x100000"),
        (("train", "espcn", "-s", "2", "--data", bomb.parent, "-o", tmp_path / "run", "--steps", "1"), "pixel limit"),
        (("data", "prepare", tmp_path / "div2k", "--scales", "2"), "SRPRUNE_MAX_PIXELS"),
        (("upscale", model_x2, image, tmp_path / "o3.png", "--max-pixels", "1000"), "--max-pixels"),
        (("upscale", model_x2, image, tmp_path / "o4.png", "--tile", "0", "--max-pixels", "4000"), "--tile 256"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli(*args), fragment)
    assert not any((tmp_path / n).exists() for n in ("o1.png", "o2.png", "o3.png", "o4.png", "run"))
    assert not (tmp_path / "div2k" / "DIV2K_train_LR_bicubic").exists()
    monkeypatch.setenv("SRPRUNE_MAX_PIXELS", "lots")
    assert_one_line_error(run_cli("upscale", model_x2, image, tmp_path / "o5.png"), "SRPRUNE_MAX_PIXELS", alone=True)
    monkeypatch.setenv("SRPRUNE_MAX_PIXELS", "100")
    assert_one_line_error(run_cli("upscale", model_x2, image, tmp_path / "o5.png"), "100 px")
    monkeypatch.setenv("SRPRUNE_MAX_PIXELS", "10000000")
    assert run_cli("upscale", model_x2, image, tmp_path / "o5.png").code == 0


def test_a_bomb_in_the_lr_cache_is_recomputed(run_cli, tmp_path):
    """A cache entry whose header claims 100000x100000 is not trusted: the LR image is made again."""
    from srprune.data.cache import lr_cache_path
    from srprune.imresize import mod_crop

    folder = tmp_path / "hr"
    folder.mkdir()
    hr = data.chelsea()[:48, :64]
    cv2.imwrite(str(folder / "cat.png"), hr[..., ::-1])
    entry = lr_cache_path(mod_crop(hr, 2), 2)
    huge_png(entry, 100_000, 100_000)
    r = run_cli("eval", "bicubic", "-s", "2", "--data", folder)
    assert r.code == 0, r.err
    assert cv2.imread(str(entry)).shape == (24, 32, 3)


@pytest.mark.parametrize("args", [
    ("compile", "espcn", "-s", "2", "--size", "65x49"),
    ("compile", "espcn", "-s", "3", "--size", "1280x720"),
    ("bench", "espcn", "-s", "2", "--size", "65x48"),
])
def test_sizes_not_a_multiple_of_the_scale_are_refused(run_cli, tmp_path, args):
    out = ("-o", tmp_path / "c") if args[0] == "compile" else ()
    assert_one_line_error(run_cli(*args, *out), "not a multiple of the scale", alone=True)
    assert not (tmp_path / "c").exists()


def test_default_size_is_720p_rounded_to_the_scale():
    from srprune.frame import default_frame, frame_for

    assert default_frame(2) == (1280, 720) and default_frame(3) == (1278, 720)
    assert frame_for(None, 3) == ((1278, 720), (426, 240))


def test_foreign_pickles_give_one_line_and_no_warning(run_cli, tmp_path):
    """torch warns about a foreign pickle protocol before refusing it: the user sees the error line only."""
    raw, legacy = tmp_path / "raw.pt", tmp_path / "legacy.pt"
    raw.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4))
    legacy.write_bytes(pickle.dumps(np.zeros(3), protocol=4))
    for path in (raw, legacy):
        assert_one_line_error(run_cli("info", path), path.name, alone=True)
