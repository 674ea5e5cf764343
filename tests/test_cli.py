"""The `edge-medsam` command as a user runs it: console script, data commands, one-line errors."""

import json
import shutil
import subprocess
import sys

import pytest

from edge_medsam.cli import main


def test_console_script_and_module_entry_point():
    exe = shutil.which("edge-medsam")
    cmd = [exe] if exe else [sys.executable, "-m", "edge_medsam"]
    out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "edge-medsam" in out.stdout


def test_modalities_listing(capsys):
    assert main(["modalities", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in data["modalities"]][:3] == ["ct", "mr", "pet"]
    assert "lung" in data["ct_windows"]


def test_synth_inspect_and_layout(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert main(["data", "synth", "--out", str(corpus), "--per-modality", "2", "--size", "64",
                 "--modalities", "ct,fundus", "--volumes", "1"]) == 0
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert {s["modality"] for s in manifest["samples"]} == {"ct", "fundus"}
    capsys.readouterr()

    ct_png = corpus / manifest["samples"][0]["image"]
    volume = corpus / manifest["volumes"][0]["image"]
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    code = main(["data", "inspect", str(ct_png), str(junk), str(volume)])
    out, err = capsys.readouterr()
    assert code == 1  # one input failed, the others were still read
    assert "notes.png" in err and "fix:" in err and len(err.strip().splitlines()) == 1
    assert f"{ct_png}: image 64x64 uint16" in out and "volume 64x64x32 int16" in out

    assert main(["data", "layout", str(corpus)]) == 0
    assert "folder_pairs" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["data", "synth", "--out", "x", "--modalities", "xrey"],
                                  ["data", "layout", "/nonexistent/folder"]])
def test_user_errors_are_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-medsam: error:") and len(err.splitlines()) == 1 and "fix:" in err
