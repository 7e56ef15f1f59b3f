"""Nothing of the user's is lost: --force replaces only srprune's files, a run folder has one writer, a
damaged LR cache entry is recomputed, `data prepare` changes nothing when it fails, outputs follow the umask.

Each test covers a class of fault (docs/reliability.md), with the real commands where they are cheap.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from srcommon.atomic import write_text
from srcommon.errors import OutputConflict
from srcommon.lock import FolderLock
from srcommon.owned import RECORD, OwnedFolder, check_replaceable, remove_owned, staged_folder
from tests.conftest import ROOT, assert_one_line_error

TRAIN = ["--scale", "2", "--steps", "2", "--batch-size", "2", "--patch-size", "12", "--val-every", "2",
         "--checkpoint-every", "2", "--threads", "1"]


def _user_files(folder: Path) -> dict[str, bytes]:
    """A user's own files in `folder` (a document and a photo folder), to check they survive."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.txt").write_text("three years of work")
    (folder / "photos").mkdir()
    (folder / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return {"thesis.txt": b"three years of work", "photos/cat.jpg": b"\xff\xd8 not really a jpeg"}


def _intact(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / rel).read_bytes() == data for rel, data in files.items())


# --- --force replaces only what srprune wrote ---------------------------------------------------------------


def test_owned_folder_removes_only_recorded_files(tmp_path):
    d = tmp_path / "out"
    owned = OwnedFolder.claim(d, "test")
    owned.path("model.pt").write_bytes(b"m")
    (d / "logs").mkdir()
    owned.add("logs")  # a recorded folder is srprune's as a whole
    (d / "logs" / "a.txt").write_text("x")
    (d / ".model.pt.abc123.tmp.pt").write_bytes(b"half")  # a killed atomic write of a recorded file
    check_replaceable(d, force=True)
    with pytest.raises(OutputConflict, match="use --force"):
        check_replaceable(d, force=False)
    remove_owned(d)
    assert not d.exists()
    # with a foreign file: refused before anything is removed, and the foreign file stays
    owned = OwnedFolder.claim(d, "test")
    owned.path("model.pt").write_bytes(b"m")
    files = _user_files(d)
    with pytest.raises(OutputConflict, match=r"did not write \(photos and 1 more\)"):
        OwnedFolder.claim(d, "test", force=True)
    assert (d / "model.pt").exists() and _intact(d, files)
    remove_owned(d)  # removal never touches foreign files either
    assert sorted(p.name for p in d.iterdir()) == ["photos", "thesis.txt"] and _intact(d, files)
    # a record naming paths outside the folder is ignored, not followed
    (d / RECORD).write_text(json.dumps({"format": "srprune-files", "files": ["../victim", "/etc/passwd"]}))
    (tmp_path / "victim").write_text("v")
    remove_owned(d)
    assert (tmp_path / "victim").exists() and _intact(d, files)


def test_staged_folder_replaces_its_own_folder_and_refuses_a_foreign_one(tmp_path):
    out = tmp_path / "art"
    with staged_folder(out, force=False, command="test") as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with staged_folder(out, force=True, command="test") as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "b.bin"]
    (out / "notes.md").write_text("mine")
    with pytest.raises(OutputConflict, match="notes.md"):
        with staged_folder(out, force=True, command="test") as tmp:
            pass
    assert (out / "notes.md").read_text() == "mine" and (out / "b.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no staging folder left behind


def test_train_force_keeps_the_users_files(run_cli, tmp_path):
    out = tmp_path / "run"
    files = _user_files(out)
    r = run_cli("train", "espcn", "--data", "builtin", "-o", out, "--force", *TRAIN)
    assert_one_line_error(r, "did not write", "photos")
    assert _intact(out, files) and not (out / "model.pt").exists()
    # srprune's own earlier training is replaced by --force
    own = tmp_path / "own"
    assert run_cli("train", "espcn", "--data", "builtin", "-o", own, *TRAIN).code == 0
    first = (own / "model.pt").stat().st_mtime_ns
    assert run_cli("train", "espcn", "--data", "builtin", "-o", own, "--force", *TRAIN).code == 0
    assert (own / "model.pt").stat().st_mtime_ns != first
    assert json.loads((own / RECORD).read_text())["files"] == ["checkpoint.pt", "model.pt", "train.log",
                                                                     "train_config.json"]


def test_compile_force_keeps_the_users_files(run_cli, tmp_path):
    out = tmp_path / "compiled"
    files = _user_files(out)
    r = run_cli("compile", "espcn", "--scale", "2", "--size", "32x24", "-o", out, "--force")
    assert_one_line_error(r, "did not write")
    assert _intact(out, files) and not (out / "model.so").exists()
    own = tmp_path / "own"
    assert run_cli("compile", "espcn", "--scale", "2", "--size", "32x24", "-o", own).code == 0
    (own / "manifest.json").read_text()
    r = run_cli("compile", "espcn", "--scale", "2", "--size", "32x24", "-o", own)
    assert_one_line_error(r, "exists")
    assert run_cli("compile", "espcn", "--scale", "2", "--size", "32x24", "-o", own, "--force").code == 0


def test_eval_and_upscale_force_never_overwrite_a_users_file(run_cli, tmp_path):
    src = tmp_path / "lr"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((12, 16, 3), 80, np.uint8))
    dst = tmp_path / "sr"
    dst.mkdir()
    (dst / "a.png").write_bytes(b"the user's own a.png")
    r = run_cli("upscale", "bicubic", src, dst, "--scale", "2", "--force")
    assert_one_line_error(r, "not written by srprune")
    assert (dst / "a.png").read_bytes() == b"the user's own a.png"
    (dst / "a.png").unlink()
    assert run_cli("upscale", "bicubic", src, dst, "--scale", "2").code == 0
    assert run_cli("upscale", "bicubic", src, dst, "--scale", "2", "--force").code == 0  # its own output
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "notes.txt").write_text("mine")
    assert run_cli("eval", "bicubic", "--scale", "2", "--data", "builtin", "--save-images", saved).code == 0
    names = sorted(p.name for p in saved.glob("*.png"))
    assert names and (saved / "notes.txt").read_text() == "mine"
    user_png = saved / names[0]
    user_png.write_bytes(b"mine now")
    (saved / RECORD).write_text(json.dumps({"format": "srprune-files", "files": names[1:]}))
    r = run_cli("eval", "bicubic", "--scale", "2", "--data", "builtin", "--save-images", saved, "--force")
    assert_one_line_error(r, "not written by srprune")
    assert user_png.read_bytes() == b"mine now"


# --- one process per run folder ----------------------------------------------------------------------------


def _hold(folder: Path, shared: bool = False) -> subprocess.Popen:
    """Another process holding `folder` until killed (it prints 'held' once it has it)."""
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from srcommon.lock import FolderLock; "
            f"FolderLock({str(folder)!r}, 'srprune run', shared={shared}).acquire(); print('held', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_on_a_run_folder_stops_naming_the_holder(run_cli, tmp_path):
    from tests.test_search import write_config

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", run)
    holder = _hold(run)
    try:
        r = run_cli("run", "-c", cfg)
        assert_one_line_error(r, "in use by", f"pid {holder.pid}")
        assert not (run / "config.yaml").exists()  # nothing of the second process was written
        r = run_cli("search", "-c", cfg)  # search workers are excluded by a `run` too
        assert_one_line_error(r, "in use by")
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock is free at once: no stale lock to clean by hand
    lock = FolderLock(run, "test").acquire()
    lock.release()


def test_search_workers_share_a_folder_and_exclude_a_run(tmp_path):
    a = _hold(tmp_path, shared=True)
    b = _hold(tmp_path, shared=True)  # a second worker gets in
    try:
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from srcommon.lock import FolderLock; "
                f"FolderLock({str(tmp_path)!r}, 'srprune run').acquire()")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "search workers" in r.stderr
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGKILL)
            p.wait()


def test_wait_takes_the_folder_when_the_holder_ends(tmp_path):
    holder = _hold(tmp_path)
    messages: list[str] = []
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); os.kill({holder.pid}, 9)"])
    started = time.monotonic()
    lock = FolderLock(tmp_path, "test").acquire(wait=True, on_wait=messages.append)
    assert time.monotonic() - started >= 0.5 and "in use by" in messages[0]
    lock.release()
    killer.wait()
    holder.wait()


# --- the LR cache never serves a damaged or replaced entry ----------------------------------------------------


def test_a_poisoned_cache_entry_is_recomputed():
    from srprune.data.cache import cached_protocol_lr, lr_cache_path
    from srprune.data.pairs import protocol_lr

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    want = protocol_lr(hr, 2)
    np.testing.assert_array_equal(cached_protocol_lr(hr, 2), want)
    path = lr_cache_path(hr, 2)
    cv2.imwrite(str(path), np.zeros_like(want))  # same size, black: the attack of the audit
    np.testing.assert_array_equal(cached_protocol_lr(hr, 2), want)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], want)  # and the entry was rewritten
    record = path.with_suffix(".json")
    doc = json.loads(record.read_text())
    doc["source"]["protocol"] = "an older protocol"
    record.write_text(json.dumps(doc))
    cv2.imwrite(str(path), np.zeros_like(want))
    np.testing.assert_array_equal(cached_protocol_lr(hr, 2), want)
    record.unlink()  # an entry without its record (an older srprune, or half a write) is not trusted either
    cv2.imwrite(str(path), np.zeros_like(want))
    np.testing.assert_array_equal(cached_protocol_lr(hr, 2), want)


def test_bicubic_eval_is_unchanged_by_a_poisoned_cache(run_cli, tmp_path):
    import glob

    from srprune.data.cache import cache_dir

    r1 = run_cli("eval", "bicubic", "--scale", "2", "--data", "builtin", "--json", tmp_path / "a.json")
    assert r1.code == 0
    entries = glob.glob(str(cache_dir() / "lr" / "*" / "*.png"))
    assert entries
    for e in entries:
        img = cv2.imread(e)
        cv2.imwrite(e, np.zeros_like(img))
    r2 = run_cli("eval", "bicubic", "--scale", "2", "--data", "builtin", "--json", tmp_path / "b.json")
    assert r2.code == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["mean"] == b["mean"]


# --- data prepare: all or nothing ------------------------------------------------------------------------------


def test_data_prepare_changes_nothing_when_an_image_fails_half_way(run_cli, tmp_path):
    hr = tmp_path / "Set5" / "HR"
    hr.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(hr / f"{name}.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    data = (hr / "b.png").read_bytes()
    (hr / "b.png").write_bytes(data[:60])  # a valid header, a truncated body: fails only when decoded
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    r = run_cli("data", "prepare", tmp_path, "--scales", "2")
    assert r.code == 2 and "b.png" in r.err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
    (hr / "b.png").write_bytes(data)
    assert run_cli("data", "prepare", tmp_path, "--scales", "2").code == 0
    assert len(list((tmp_path / "Set5" / "LR_bicubic" / "X2").glob("*.png"))) == 3


# --- outputs follow the umask ----------------------------------------------------------------------------------


def test_outputs_follow_the_umask(run_cli, tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        os.umask(0o027)
        write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640
        os.chmod(tmp_path / "b.txt", 0o600)  # a file that is replaced keeps its own mode
        write_text(tmp_path / "b.txt", "y")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
        os.umask(0o022)
        assert run_cli("compile", "espcn", "--scale", "2", "--size", "32x24", "-o", tmp_path / "c").code == 0
        assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755
        assert stat.S_IMODE((tmp_path / "c" / "manifest.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)


# --- a damaged training checkpoint is one line on --resume --------------------------------------------------


@pytest.mark.parametrize("damage", ["drop_history", "drop_config", "misshape_weight", "not_a_dict"])
def test_damaged_training_checkpoint_is_one_line_on_resume(run_cli, tmp_path, damage):
    import torch

    out = tmp_path / "run"
    args = ["train", "espcn", "--data", "builtin", "-o", out, "--scale", "2", "--steps", "4", "--batch-size", "2",
            "--patch-size", "12", "--val-every", "4", "--checkpoint-every", "2", "--threads", "1"]
    assert run_cli(*args).code == 0
    (out / "model.pt").unlink()  # as if killed after the checkpoint
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    if damage == "drop_history":
        del state["history"]
    elif damage == "drop_config":
        del state["config"]
    elif damage == "misshape_weight":
        name = next(iter(state["model"]))
        state["model"][name] = torch.zeros(3, 1, 1, 1)
    else:
        state = [1, 2, 3]
    torch.save(state, ckpt)
    r = run_cli(*args, "--resume")
    assert_one_line_error(r, "checkpoint")
    assert not (out / "model.pt").exists()
