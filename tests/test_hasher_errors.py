"""Bad input: a clear error per file, and the rest of the batch goes on."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import FileError, Result, hash_path, hash_paths
from PIL import Image


def _good(path: Path) -> Path:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).resize((96, 64))
    img.save(path)
    return path


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width × height, with no pixel data worth decoding."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def _error(path: Path) -> FileError:
    [outcome] = hash_path(path)
    assert isinstance(outcome, FileError), outcome
    return outcome


def test_zero_byte(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    err = _error(tmp_path / "empty.jpg")
    assert err.reason == "EmptyFile" and "empty" in err.error


def test_truncated_jpeg(tmp_path: Path) -> None:
    good = _good(tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    err = _error(tmp_path / "cut.jpg")
    assert err.reason == "CorruptImage" and "truncated" in err.error


def test_corrupt_png_body(tmp_path: Path) -> None:
    good = bytearray(_good(tmp_path / "good.png").read_bytes())
    good[60:200] = b"\x00" * 140
    (tmp_path / "bad.png").write_bytes(bytes(good))
    assert _error(tmp_path / "bad.png").reason == "CorruptImage"


def test_garbage_named_jpg_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(os.urandom(1000))
    err = _error(tmp_path / "x.jpg")
    assert err.reason == "UnsupportedFormat" and "named .jpg" in err.error


@pytest.mark.parametrize(("w", "h"), [(20_000, 20_000), (1 << 30, 1 << 30)])
def test_decompression_bomb_refused_before_decoding(tmp_path: Path, w: int, h: int) -> None:
    err = _error(_bomb_png(tmp_path / "bomb.png", w, h))
    assert err.reason == "TooManyPixels" and "decompression bomb" in err.error


def test_dicom_bomb_refused_from_header(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 10
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    assert _error(tmp_path / "bomb.dcm").reason == "TooManyPixels"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _good(tmp_path / "secret.png")
    other = _good(tmp_path / "fine.png")
    path.chmod(0)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Root reads anything (and CI runs as root): make opening this one file fail
        # as it would for anyone else.
        real_open = open

        def guarded_open(file: object, *args: object, **kwargs: object) -> object:
            if Path(str(file)) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr("builtins.open", guarded_open)
    err = _error(path)
    assert err.reason == "UnreadableFile" and "permission" in err.error
    # The rest of a batch goes on (one worker, so the guard applies in-process).
    outcomes = list(hash_paths([path, other], workers=1))
    assert [type(o).__name__ for o in outcomes] == ["FileError", "Result"]
    assert isinstance(outcomes[0], FileError) and outcomes[0].reason == "UnreadableFile"


def test_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert "symlink loop" in _error(tmp_path / "a.jpg").error
    tree = tmp_path / "tree"
    tree.mkdir()
    _good(tree / "one.png")
    (tree / "again").symlink_to(tree, target_is_directory=True)
    outcomes = list(hash_paths([tree], workers=1))
    assert [type(o).__name__ for o in outcomes] == ["FileError", "Result"]
    assert isinstance(outcomes[0], FileError) and "symlink loop" in outcomes[0].error


def test_batch_goes_on_in_order_with_a_pool(tmp_path: Path) -> None:
    files = []
    for i in range(6):
        files.append(_good(tmp_path / f"{i}-good.png"))
        bad = tmp_path / f"{i}-bad.png"
        bad.write_bytes(b"" if i % 2 else b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
        files.append(bad)
    files.append(tmp_path / "missing.png")
    seen: list[str] = []
    outcomes = list(hash_paths(files, workers=2, progress=seen.append))
    assert [o.path for o in outcomes] == [str(f) for f in files]
    assert sorted(seen) == sorted(str(f) for f in files)
    assert [isinstance(o, Result) for o in outcomes] == [i % 2 == 0 for i in range(12)] + [False]
    assert outcomes[-1].error == "no such file (or a dangling symlink)"
