from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscore.cli import main


def test_split_prints_the_manifest_and_writes_the_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"id,text\n" + b"".join(b'%d,"a, b"\n' % i for i in range(1000)))
    assert main(["split", str(source), "--max-shard-bytes", "4KiB", "-o", str(tmp_path / "out")]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["format"] == "csv" and manifest["records"] == 1000 and manifest["split"]
    names = [Path(s["name"]).name for s in manifest["shards"]]
    assert names == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names[0] == "data.00000.csv"


def test_split_errors_name_the_file_and_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'a\n"never closed\n1\n')
    assert main(["split", str(bad), "--max-shard-bytes", "1KiB", "-o", str(tmp_path / "o")]) == 1
    assert "bad.csv: unterminated quoted field" in capsys.readouterr().err
    assert main(["split", str(tmp_path / "missing.csv"), "--max-shard-bytes", "1KiB", "-o", "x"]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["split", str(bad), "--max-shard-bytes", "lots", "-o", "x"])
    assert usage.value.code == 2
    assert "--max-shard-bytes: not a size: 'lots'" in capsys.readouterr().err
