"""``hashfed hash`` through click's CliRunner, and the EXIF-orientation pair."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hashfed.hasher import EXIF_ROTATED, STORED, Result, hash_path
from hashfed.hasher.decode import ORIENTATION_TAG
from hashfed.node.cli.hash import hash_command
from media import movie
from PIL import Image


def _photo() -> Image.Image:
    rng = np.random.default_rng(11)
    return Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).resize(
        (180, 120), Image.Resampling.BICUBIC
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _photo().save(tmp_path / "a.png")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "flat.png")  # quality 0
    (tmp_path / "clip.mp4").write_bytes(movie(payload=b"\x01" * 5000))
    return tmp_path


def test_exif_orientation_pair_built_from_one_image(tmp_path: Path) -> None:
    photo = _photo()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # viewer rotates 90° clockwise
    photo.save(tmp_path / "tagged.png", exif=exif)
    viewed = photo.transpose(Image.Transpose.ROTATE_270)  # what a viewer shows
    viewed.save(tmp_path / "viewed.png")
    stored, rotated = hash_path(tmp_path / "tagged.png")
    [plain] = hash_path(tmp_path / "viewed.png")
    assert isinstance(stored, Result) and isinstance(rotated, Result)
    assert isinstance(plain, Result)
    assert (stored.variant, rotated.variant) == (STORED, EXIF_ROTATED)
    assert rotated.hash == plain.hash != stored.hash
    photo.save(tmp_path / "copy.png")
    [copy] = hash_path(tmp_path / "copy.png")
    assert isinstance(copy, Result) and copy.hash == stored.hash


def test_table_default(folder: Path) -> None:
    res = CliRunner().invoke(hash_command, [str(folder)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["kind", "hash", "quality", "variant", "path"]
    assert len(lines) == 2 + 3
    assert "low quality" in res.stdout and "below PDQ quality 50" in res.stderr


def test_json(folder: Path) -> None:
    res = CliRunner().invoke(hash_command, [str(folder), "--json", "-s"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["clip.mp4"]["kind"] == "md5" and by_name["clip.mp4"]["quality"] is None
    assert by_name["flat.png"]["publishable"] is False
    assert by_name["a.png"]["kind"] == "pdq" and len(by_name["a.png"]["hash"]) == 64


def test_csv_is_the_publish_format_without_low_quality(folder: Path) -> None:
    res = CliRunner().invoke(hash_command, [str(folder), "--csv"])
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == "kind,hash,quality,path,variant"
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sorted(Path(r["path"]).name for r in rows) == ["a.png", "clip.mp4"]
    assert {r["variant"] for r in rows} == {"stored"}
    assert "left out of the CSV" in res.stderr


def test_errors_give_exit_1_and_other_files_still_hash(folder: Path) -> None:
    (folder / "empty.gif").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo")
    res = CliRunner().invoke(hash_command, [str(folder), "--json", "--workers", "2"])
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert (
        sum("hash" in r for r in rows) == 3
        and sum("error" in r and "hash" not in r for r in rows) == 2
    )
    assert "empty.gif: empty file" in res.stderr
    assert "notes.txt: .txt files are not accepted; accepted: photos: jpeg" in res.stderr
    assert "2 of 5 file(s) could not be hashed" in res.stderr


def test_dihedral(folder: Path) -> None:
    res = CliRunner().invoke(hash_command, [str(folder / "a.png"), "--dihedral", "--json"])
    assert res.exit_code == 0
    [row] = json.loads(res.stdout)
    assert len(row["dihedral"]) == 8 and row["dihedral"][0] == row["hash"]
    table = CliRunner().invoke(hash_command, [str(folder / "a.png"), "--dihedral"])
    assert "stored/rotate90" in table.stdout and len(table.stdout.splitlines()) == 2 + 8
    both = CliRunner().invoke(hash_command, [str(folder), "--dihedral", "--csv"])
    assert both.exit_code == 2 and "use one or the other" in both.stderr


def test_missing_path_and_no_args(tmp_path: Path) -> None:
    res = CliRunner().invoke(hash_command, [str(tmp_path / "nope.jpg")])
    assert res.exit_code == 1 and "no such file" in res.stderr
    assert CliRunner().invoke(hash_command, []).exit_code == 2
