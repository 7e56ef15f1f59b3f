"""Folders srprune writes into, and the record of what it wrote there, so `--force` removes only that.

Why: a user may point `-o` at a folder that holds their own files. `--force` means "replace what srprune
made here before", never "delete this folder". Every command that writes a folder lists the files it
writes in `FOLDER/.srprune-files.json` (before writing them, so a killed command's files are listed too);
`--force` removes exactly those (and the temporary files of their atomic writes) and refuses with one line
when anything else is in the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from srcommon.atomic import default_mode, temp_name_prefix, write_json
from srcommon.errors import OutputConflict

RECORD = ".srprune-files.json"
RECORD_FORMAT = "srprune-files"


def _read_record(folder: Path) -> set[str]:
    """Relative paths srprune recorded as written in `folder` (empty when there is no readable record)."""
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("files"), list):
        return set()
    return {f for f in data["files"] if isinstance(f, str) and _is_relative(f)}


def _is_relative(rel: str) -> bool:
    p = Path(rel)
    return not p.is_absolute() and ".." not in p.parts and rel not in ("", ".")


def _entries(folder: Path) -> Iterator[str]:
    """Every file and folder under `folder`, relative, as POSIX paths (symlinks are not followed)."""
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        for name in dirs + files:
            yield (base / name).as_posix()


def _ours(rel: str, owned: set[str], parents: set[str]) -> bool:
    """Recorded, inside a recorded folder, a folder on the way to a recorded file, the record itself, or a
    leftover temporary file of an atomic write of a recorded file (a killed writer)."""
    if rel == RECORD or rel in owned or rel in parents:
        return True
    p = Path(rel)
    if any(a.as_posix() in owned for a in p.parents):
        return True  # inside a recorded folder: the whole subtree is srprune's
    return any(p.name.startswith(temp_name_prefix(Path(o).name)) and p.parent == Path(o).parent for o in owned)


def _parents(owned: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for rel in owned:
        out.update(p.as_posix() for p in Path(rel).parents if p.as_posix() != ".")
    return out


def foreign_entries(folder: Path, extra_owned: Iterable[str] = ()) -> list[str]:
    """What in `folder` srprune did not record as its own (sorted, top-level first)."""
    owned = _read_record(folder) | set(extra_owned)
    parents = _parents(owned)
    foreign = [rel for rel in _entries(folder) if not _ours(rel, owned, parents)]
    # report a foreign folder, not every file inside it
    tops = [r for r in foreign if not any(r.startswith(f + "/") for f in foreign if f != r)]
    return sorted(tops, key=lambda r: (r.count("/"), r))


def check_replaceable(folder: str | os.PathLike, force: bool, extra_owned: Iterable[str] = ()) -> None:
    """Refuse before any slow work when writing `folder` could lose something.

    Absent: fine. Otherwise it needs `force`, and then it must hold only what srprune recorded there (`extra_owned` names files an older srprune wrote without a record, e.g. an artifact's manifest).
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputConflict(f"{folder}: exists and is not a folder")
    if not force:
        raise OutputConflict(f"{folder}: exists (use --force to replace what srprune wrote there)")
    foreign = foreign_entries(folder, extra_owned)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputConflict(f"{folder}: holds files srprune did not write ({foreign[0]}{more}); --force replaces "
                             f"only srprune's own files: move them away or choose another folder")


def remove_owned(folder: str | os.PathLike, extra_owned: Iterable[str] = ()) -> None:
    """Remove what srprune recorded in `folder` (and its temporary leftovers), then the folders that became
    empty; `folder` itself goes too when nothing else is left. Foreign files are never touched."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    owned = _read_record(folder) | set(extra_owned)
    parents = _parents(owned)
    for rel in sorted(_entries(folder), key=lambda r: -r.count("/")):  # deepest first
        path = folder / rel
        if rel == RECORD or rel in parents or not _ours(rel, owned, parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # a recorded folder (e.g. a log folder) is srprune's whole
        else:
            path.unlink(missing_ok=True)
    for rel in sorted(parents, key=lambda r: -r.count("/")):
        with contextlib.suppress(OSError):
            (folder / rel).rmdir()  # only when empty
    (folder / RECORD).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


class OwnedFolder:
    """A folder a command writes into, with its record of what it wrote (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.dir = Path(folder)
        self.command = command

    @classmethod
    def claim(cls, folder: str | os.PathLike, command: str, force: bool = False,
              extra_owned: Iterable[str] = ()) -> "OwnedFolder":
        """Take `folder` for `command`. With `force`, first remove what srprune wrote there, refusing
        (OutputConflict, before any work) when the folder holds anything else. Without it nothing is removed:
        the command itself refuses to overwrite its own outputs (or resumes them)."""
        folder = Path(folder)
        if force:
            check_replaceable(folder, True, extra_owned)
            remove_owned(folder, extra_owned)
        elif folder.exists() and (folder.is_symlink() or not folder.is_dir()):
            raise OutputConflict(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        owned = cls(folder, command)
        owned.add(*extra_owned)
        return owned

    def reserve(self, rels: Iterable[str], force: bool) -> None:
        """Record files a command is about to write among others in a shared folder (eval's images,
        upscale's outputs): an existing one is replaced only with `force`, and only if srprune wrote it."""
        rels = [Path(r).as_posix() for r in rels]
        owned = self.files()
        for rel in rels:
            if (self.dir / rel).exists():
                if not force:
                    raise OutputConflict(f"{self.dir / rel}: already exists (use --force to overwrite)")
                if rel not in owned:
                    raise OutputConflict(f"{self.dir / rel}: exists and was not written by srprune; --force "
                                         f"replaces only srprune's own files: move it away or choose another folder")
        self.add(*rels)

    def files(self) -> set[str]:
        """What the record lists now."""
        return _read_record(self.dir)

    def add(self, *rels: str) -> None:
        """Record files as srprune's before they are written."""
        new = self.files() | {Path(r).as_posix() for r in rels}
        bad = [r for r in new if not _is_relative(r)]
        if bad:
            raise ValueError(f"not a path inside the folder: {bad[0]}")
        write_json(self.dir / RECORD, {"format": RECORD_FORMAT, "command": self.command, "files": sorted(new)})

    def path(self, rel: str) -> Path:
        """`folder/rel`, recorded as srprune's (call before writing it)."""
        self.add(rel)
        return self.dir / rel


def record_tree(folder: Path, command: str) -> None:
    """Record every file now in `folder` as srprune's (for folders built complete in a staging area)."""
    files = [rel for rel in _entries(folder) if (folder / rel).is_file() and rel != RECORD]
    OwnedFolder(folder, command).add(*files)


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, force: bool, command: str,
                  extra_owned: Iterable[str] = ()) -> Iterator[Path]:
    """A temporary folder beside `out` that replaces `out` when the block succeeds and vanishes when it fails,
    so a folder appears complete or not at all. An existing `out` is replaced only with `force` and only when
    it holds nothing but srprune's own files (checked again right before the swap)."""
    out = Path(out)
    check_replaceable(out, force, extra_owned)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        record_tree(tmp, command)
        os.chmod(tmp, default_mode(out, directory=True))
        if out.exists():
            check_replaceable(out, force, extra_owned)
            remove_owned(out, extra_owned)
            if out.exists():  # something appeared between the check and the removal
                raise OutputConflict(f"{out}: could not be emptied of srprune's files; nothing was replaced")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
