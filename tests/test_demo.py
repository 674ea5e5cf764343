"""The browser demo without a browser: the session logic, uploads, downloads and drawing, then the launched app
driven over HTTP with gradio_client (upload → mask, click → refined mask, download → a valid file).

The test bundle has random weights: the tests check mechanics (which prompts reach the model, what undo restores,
which file comes back), never how good a mask is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_image_annotation")
pytest.importorskip("gradio_client")

from demo_server import corpus_picture, ct_series, running_demo, zipped
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from runtime_bundle import cached_bundle

from edge_medsam.apps.demo.document import DICOM_SEG, NIFTI, PNG, load_document
from edge_medsam.apps.demo.engine import DemoEngine
from edge_medsam.apps.demo.export import FILE_NAMES, export_mask
from edge_medsam.apps.demo.overlay import Layer, contour, render, zoom_for
from edge_medsam.apps.demo.session import DemoSession
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import ReadLimits, read_dicom_seg, read_mask, read_volume, slice_volume

MB = 2**20
LIMITS = ReadLimits(max_side=1024, max_pixels=1024 * 1024, max_voxels=64 * 64 * 64)


@pytest.fixture(scope="module")
def engine() -> DemoEngine:
    return DemoEngine.open(cached_bundle(), backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    picture, _ = corpus_picture(folder)
    xray, _ = corpus_picture(folder, "xray", 1, size=96, name="xray.png")
    files, _ = ct_series(folder)
    return {"picture": picture, "xray": xray, "series_zip": zipped(files, folder / "ct.zip"), "slice": files[0],
            "series_dir": files[0].parent}


def picture_session(engine: DemoEngine, inputs: dict[str, Path]) -> DemoSession:
    document = load_document([inputs["picture"]], ["picture.png"], LIMITS, 10 * MB)
    return DemoSession(engine, document)


# --- session logic ------------------------------------------------------------------------------------------
def test_upload_shows_the_self_prompted_mask_at_once(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    session = picture_session(engine, inputs)
    predictor = engine.predictor
    predictor.set_image(inputs["picture"])
    expected = predictor.predict()
    annotation = session.current
    assert annotation is not None and not annotation.prompted
    np.testing.assert_array_equal(annotation.mask, expected.masks[0])
    assert session.last_step.action == "load"
    assert {"encoder", "decoder", "total"} <= set(session.last_step.latency_ms)


def test_clicks_refine_with_all_points_and_the_previous_logits(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    session = picture_session(engine, inputs)
    first = session.current
    assert first is not None and first.auto
    session.add_point(40, 50, positive=True)
    session.add_point(120, 30, positive=False)
    annotation = session.current
    assert annotation is not None and annotation.points == ((40.0, 50.0, 1), (120.0, 30.0, 0))
    predictor = engine.predictor
    predictor.set_image(inputs["picture"])
    # Clicks on the self-prompted mask correct that foreground (not "segment the clicked object").
    step1 = predictor.predict(points=[[40, 50]], labels=[1], mask=first.logits, auto=True)
    step2 = predictor.predict(points=[[40, 50], [120, 30]], labels=[1, 0], mask=step1.low_res_logits[0], auto=True)
    np.testing.assert_array_equal(annotation.mask, step2.masks[0])
    assert annotation.auto and not np.array_equal(annotation.mask, first.mask)
    assert "encoder" not in session.last_step.latency_ms  # the embedding was cached: a click only decodes
    assert session.last_step.latency_ms["decoder"] > 0
    # A click on an object without a mask, or after a box, starts or refines a prompted object.
    session.new_object()
    session.add_point(40, 50, positive=True)
    prompted = predictor.predict(points=[[40, 50]], labels=[1])
    assert not session.current.auto  # type: ignore[union-attr]
    np.testing.assert_array_equal(session.current.mask, prompted.masks[0])  # type: ignore[union-attr]
    as_correction = predictor.predict(points=[[40, 50]], labels=[1], auto=True)
    assert not np.allclose(prompted.low_res_logits, as_correction.low_res_logits)  # the weight reaches the graph
    session.set_box((20, 20, 100, 110))
    assert not session.current.auto  # type: ignore[union-attr]


def test_undo_restores_each_earlier_state_and_reset_is_undoable(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    session = picture_session(engine, inputs)
    states = [session.current]
    session.add_point(40, 50, True)
    states.append(session.current)
    session.set_box((20, 20, 100, 110))
    states.append(session.current)
    session.new_object()
    session.add_point(90, 90, True)
    assert [o.name for o in session.objects] == ["object 1", "object 2"] and session.active == 1
    session.reset()
    assert len(session.objects) == 1 and not session.current.prompted  # type: ignore[union-attr]
    assert session.undo()
    assert len(session.objects) == 2 and session.active == 1
    for _ in range(2):  # the point on object 2, then object 2 itself
        assert session.undo()
    assert len(session.objects) == 1 and session.active == 0
    for expected in reversed(states):
        assert session.current is expected
        if expected is not states[0]:
            assert session.undo()
    assert not session.undo()


def test_a_box_is_given_removed_and_points_kept(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    session = picture_session(engine, inputs)
    session.set_box((110, 100, 30, 20))  # corners in any order
    assert session.current is not None and session.current.box == (30.0, 20.0, 110.0, 100.0)
    session.add_point(60, 60, True)
    session.set_box(None)
    assert session.current is not None and session.current.box is None and len(session.current.points) == 1
    session.clear_object()
    assert session.current is None
    with pytest.raises(InputError, match="outside"):
        session.set_box((0, 0, 500, 500))
    assert session.current is None and session.undo()  # the failed box left no undo step; the clear is undone


def test_objects_have_labels_names_and_later_ones_win(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    session = picture_session(engine, inputs)
    session.new_object("  lesion   core ")
    session.set_box((30, 30, 130, 130))
    session.rename("lesion")
    assert session.object_names() == {1: "object 1", 2: "lesion"}
    labels = session.labels()
    first, second = (session.objects[i].annotations[session.view].mask for i in (0, 1))
    np.testing.assert_array_equal(labels == 2, second)
    np.testing.assert_array_equal(labels == 1, first & ~second)
    with pytest.raises(InputError, match="empty"):
        session.rename("   ")
    assert session.undo() and session.objects[1].name == "lesion core"  # the failed rename left no undo step
    session.select(0)
    assert session.active == 0
    with pytest.raises(InputError, match="no object 3"):
        session.select(2)


def test_a_volume_is_viewed_by_plane_and_slice(engine: DemoEngine, inputs: dict[str, Path]) -> None:
    document = load_document([inputs["series_zip"]], ["ct.zip"], LIMITS, 10 * MB)
    assert document.is_volume and document.from_dicom and document.formats() == [PNG, NIFTI, DICOM_SEG]
    session = DemoSession(engine, document)
    assert session.planes[0] == "axial" and session.index == 4 and session.uses_window
    assert session.encoded().modality == "ct" and session.encoded().modality_source == "file"
    session.add_point(20, 20, True)
    session.set_view("axial", 6)
    assert session.current is None and session.last_step.latency_ms["encoder"] > 0
    session.set_view("coronal")
    assert session.index == session.stack.count // 2
    with pytest.raises(InputError, match="outside"):
        session.set_view("coronal", 999)
    session.set_view("axial", 4)
    volume = document.volume
    assert volume is not None
    labels = session.label_volume()
    shown = slice_volume(type(volume)(labels, volume.affine), "axial", 4).pixels
    np.testing.assert_array_equal(shown == 1, session.current.mask)  # type: ignore[union-attr]
    assert labels.sum() == shown.sum()  # nothing on the other slices without propagation
    followed = session.label_volume(propagate=True)
    assert ((followed > 0) >= (labels > 0)).all()


def test_3d_mode_follows_objects_and_a_click_on_any_slice_updates_the_volume(engine: DemoEngine,
                                                                           inputs: dict[str, Path]) -> None:
    session = DemoSession(engine, load_document([inputs["series_zip"]], ["ct.zip"], LIMITS, 10 * MB))
    session.set_box((8, 8, 40, 40))
    seeded = session.current
    assert seeded is not None and seeded.mask.any()
    runs = engine.predictor.encoder_runs
    session.set_3d(True)
    volume3d = session.volume3d
    assert volume3d is not None and session.label_volume() is not volume3d.labels
    np.testing.assert_array_equal(session.labels() == 1, seeded.mask)  # the shown slice keeps its mask
    followed = session.label_volume()
    session.set_view("axial", 6)
    assert session.shown_3d()[0][0].sum() == session.labels().astype(bool).sum()  # type: ignore[index]
    session.add_point(20, 20, False)
    assert session.last_step.action == "click 3D" and "correct 3D" in session.last_step.latency_ms
    clicked = session.label_volume()
    changed = {k for k in range(clicked.shape[2]) if not np.array_equal(clicked[..., k], followed[..., k])}
    assert changed <= volume3d.changed and session.shown_3d()[0][1] == ((20.0, 20.0, 0),)  # type: ignore[index]
    assert engine.predictor.encoder_runs - runs <= session.stack.count  # each slice encoded at most once
    session.set_view("coronal")  # the other planes show the 3D volume and take no 3D clicks
    volume = session.document.volume
    assert volume is not None
    np.testing.assert_array_equal(session.labels(), slice_volume(type(volume)(clicked, volume.affine), "coronal",
                                                                 session.index).pixels)
    with pytest.raises(InputError, match="axial plane"):
        session.add_point(5, 5, True)
    assert session.undo()
    np.testing.assert_array_equal(session.label_volume(), followed)
    session.set_3d(False)
    assert session.volume3d is None and session.shown_3d() is None


def test_changing_the_window_re_predicts_and_a_bad_modality_changes_nothing(engine: DemoEngine,
                                                                          inputs: dict[str, Path]) -> None:
    session = DemoSession(engine, load_document([inputs["series_zip"]], ["ct.zip"], LIMITS, 10 * MB))
    session.add_point(20, 20, True)
    before = session.current
    picture = session.display()
    session.set_intensity("auto", "bone")
    assert session.current is not None and session.current.points == before.points  # type: ignore[union-attr]
    assert not np.array_equal(session.display(), picture)
    assert not session.undo()  # older masks belong to the old input
    with pytest.raises(EdgeMedSAMError, match="modality"):
        session.set_intensity("not-a-modality", "bone")
    assert session.window == "bone" and session.current.points == before.points  # type: ignore[union-attr]


# --- uploads, downloads, drawing ----------------------------------------------------------------------------
def test_uploads_are_checked_against_the_limits_and_named_by_the_user_s_name(inputs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"over this demo's limit of 0 MB .*--max-upload-mb"):
        load_document([inputs["picture"]], ["scan.png"], LIMITS, 1000)
    with pytest.raises(InputError, match=r"^scan\.png: image is 160x160 pixels, over the limit.*larger --max-side"):
        load_document([inputs["picture"]], ["scan.png"], ReadLimits(max_side=100, max_pixels=10_000), 10 * MB)
    with pytest.raises(InputError, match="no file"):
        load_document([], [], LIMITS, MB)


def test_a_single_dicom_and_the_files_of_a_series_are_volumes(inputs: dict[str, Path]) -> None:
    single = load_document([inputs["slice"]], ["IM1.dcm"], LIMITS, 10 * MB)
    assert single.volume is not None and single.volume.shape[2] == 1 and DICOM_SEG in single.formats()
    files = sorted(inputs["series_dir"].iterdir())
    series = load_document(files, [f.name for f in files], LIMITS, 10 * MB)
    assert series.volume is not None and series.volume.shape == (48, 48, 8) and series.from_dicom
    assert series.volume.path is None  # the scratch copies are gone and nothing refers to them


def test_downloads_are_valid_files_with_fixed_names(engine: DemoEngine, inputs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    session = picture_session(engine, inputs)
    session.new_object()
    session.set_box((30, 30, 130, 130))
    png = export_mask(session, PNG, tmp_path / "a")
    assert png.name == FILE_NAMES[PNG]
    np.testing.assert_array_equal(read_mask(png), session.labels())
    with pytest.raises(InputError, match="cannot be downloaded as NIfTI"):
        export_mask(session, NIFTI, tmp_path / "a")

    zipped_series = inputs["series_zip"]
    volume_session = DemoSession(engine, load_document([zipped_series], ["ct.zip"], LIMITS, 10 * MB))
    volume_session.new_object("liver")
    volume_session.set_box((5, 5, 40, 40))
    labels = volume_session.label_volume()
    nifti = export_mask(volume_session, NIFTI, tmp_path / "b")
    import nibabel as nib

    saved = nib.load(nifti)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), labels)
    np.testing.assert_allclose(saved.affine, volume_session.document.volume.affine, atol=1e-4)  # type: ignore[union-attr]
    seg = export_mask(volume_session, DICOM_SEG, tmp_path / "b")
    read_back, names = read_dicom_seg(seg, read_volume(zipped_series))
    np.testing.assert_array_equal(read_back, labels)
    assert names[2] == "liver"


def test_overlay_magnifies_small_images_and_draws_prompts() -> None:
    picture = np.zeros((100, 80, 3), np.uint8)
    mask = np.zeros((100, 80), bool)
    mask[20:60, 10:50] = True
    zoom = zoom_for(picture.shape[:2])
    assert zoom == (4, 4)
    out = render(picture, [Layer(mask, (255, 0, 0), [(70.0, 90.0, 1), (5.0, 5.0, 0)], (10, 20, 50, 60), True)], 0.5,
                 zoom=zoom)
    assert out.shape == (400, 320, 3)
    assert tuple(out[35 * 4, 30 * 4]) == (128, 0, 0)  # inside the mask: half red
    assert tuple(out[90 * 4 + 2, 70 * 4 + 2]) == (40, 220, 60)  # the positive point, green
    assert tuple(out[5 * 4 + 2, 5 * 4 + 2]) == (235, 40, 40)  # the negative point, red
    outline = contour(mask)
    assert outline.sum() == 2 * 40 + 2 * 38 and not outline[30, 30] and (outline <= mask).all()
    contoured = render(picture, [Layer(mask, (255, 0, 0))], 0.5, contours=True)
    assert contoured[40, 30].sum() == 0 and contoured[20, 30, 0] > 200


def test_thick_slices_are_stretched_to_their_true_aspect() -> None:
    assert zoom_for((24, 128), spacing=(6.7, 2.7)) == (6, 3)  # 24 slices of 6.7 mm, 2.7 mm pixels: 144 x 384
    assert zoom_for((128, 24), spacing=(2.7, 6.7)) == (3, 6)
    assert zoom_for((600, 600)) == (1, 1)


# --- the launched app, over HTTP ----------------------------------------------------------------------------
LOOK = (0.45, False)  # opacity, contours


@pytest.fixture(scope="module")
def app():
    with running_demo(cached_bundle()) as running:
        yield running


def details(result: tuple) -> dict:
    return next(item for item in result if isinstance(item, dict) and "objects" in item)


def load(client: Client, *paths: Path) -> tuple:
    return client.predict([handle_file(str(p)) for p in paths], "auto", "soft_tissue", 40, 400, *LOOK, api_name="/load")


def test_the_app_listens_on_this_machine_only_with_the_upload_limit(app) -> None:
    assert app.blocks.local_url.startswith("http://127.0.0.1:")
    assert app.blocks.max_file_size == 512 * MB


def test_upload_click_and_download_over_http(app, inputs: dict[str, Path], tmp_path: Path) -> None:
    client = Client(app.blocks.local_url, verbose=False)
    loaded = load(client, inputs["picture"])
    shown = np.asarray(Image.open(loaded[0]))  # outputs as wired, less the state
    assert shown.shape == (480, 480, 3)  # 160 px magnified 3 times
    first = details(loaded)
    assert first["input"] == "PNG 160x160" and first["objects"][0]["pixels"] > 0
    assert first["step"]["action"] == "load" and first["model"]["backend"].startswith("onnxruntime")

    clicked = details(client.predict(40, 50, "foreground (+)", *LOOK, api_name="/click"))
    refined = clicked["objects"][0]
    assert refined["points"] == [[40.0, 50.0, 1]] and refined["pixels"] != first["objects"][0]["pixels"]
    assert set(clicked["step"]["latency_ms"]) >= {"decoder", "overlay"} and "encoder" not in clicked["step"]["latency_ms"]

    boxed = details(client.predict(10, 10, 120, 120, *LOOK, api_name="/box"))
    assert boxed["objects"][0]["box"] == [10.0, 10.0, 120.0, 120.0]
    assert details(client.predict(*LOOK, api_name="/undo"))["objects"][0]["box"] is None

    downloaded = client.predict(PNG, False, *LOOK, api_name="/download")
    assert details(downloaded)["step"]["action"] == "download PNG"
    path = Path(downloaded[0])
    mask = read_mask(path)
    assert mask.shape == (160, 160) and int((mask == 1).sum()) == refined["pixels"]


def test_a_dicom_series_downloads_as_dicom_seg(app, inputs: dict[str, Path]) -> None:
    client = Client(app.blocks.local_url, verbose=False)
    loaded = details(load(client, inputs["series_zip"]))
    assert loaded["modality"] == {"name": "ct", "source": "file", "confidence": loaded["modality"]["confidence"]}
    assert loaded["view"] == {"plane": "axial", "slice": 4, "slices": 8}
    client.predict("axial", 5, *LOOK, api_name="/view")
    client.predict(15, 15, "foreground (+)", *LOOK, api_name="/click")
    seg = Path(client.predict(DICOM_SEG, False, *LOOK, api_name="/download")[0])
    labels, names = read_dicom_seg(seg, read_volume(inputs["series_zip"]))
    volume = read_volume(inputs["series_zip"])
    touched = [k for k in range(volume.shape[2]) if slice_volume(type(volume)(labels, volume.affine), "axial", k).pixels.any()]
    assert labels.shape == volume.shape and set(touched) <= {4, 5} and names[1] == "object 1"


def test_3d_mode_over_http(app, inputs: dict[str, Path]) -> None:
    client = Client(app.blocks.local_url, verbose=False)
    load(client, inputs["series_zip"])
    entered = details(client.predict(True, *LOOK, api_name="/three_d"))
    assert entered["mode"] == "3D" and entered["step"]["action"] == "3D"
    client.predict("axial", 2, *LOOK, api_name="/view")
    clicked = details(client.predict(15, 15, "foreground (+)", *LOOK, api_name="/click"))
    assert clicked["step"]["action"] == "click 3D" and clicked["view"]["slice"] == 2
    nifti = Path(client.predict(NIFTI, False, *LOOK, api_name="/download")[0])
    labels = read_volume(nifti).voxels
    volume = read_volume(inputs["series_zip"])
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1}


def test_sessions_do_not_share_state(app, inputs: dict[str, Path]) -> None:
    alice, bob = (Client(app.blocks.local_url, verbose=False) for _ in range(2))
    load(alice, inputs["picture"])
    load(bob, inputs["xray"])
    bob_clicked = details(bob.predict(10, 10, "background (−)", *LOOK, api_name="/click"))
    alice_new = details(alice.predict(*LOOK, api_name="/new_object"))
    assert alice_new["input"] == "PNG 160x160" and len(alice_new["objects"]) == 2
    assert bob_clicked["input"] == "PNG 96x96" and len(bob_clicked["objects"]) == 1
    assert details(bob.predict(*LOOK, api_name="/undo"))["objects"][0]["points"] == []


def test_user_errors_come_back_as_one_line(app, tmp_path: Path) -> None:
    client = Client(app.blocks.local_url, verbose=False)
    with pytest.raises(AppError, match="nothing is uploaded yet"):
        client.predict(1, 1, "foreground (+)", *LOOK, api_name="/click")
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(AppError, match=r"notes\.png: not a readable image.*\(fix: "):
        load(client, notes)


# --- the command and the torch-free promise -----------------------------------------------------------------
def test_the_demo_command_serves_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """`edge-medsam demo --bundle B --port P` opens the bundle and serves the page on 127.0.0.1:P."""
    from edge_medsam.apps.demo.server import DemoApp
    from edge_medsam.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served: dict[str, str] = {}
    launch = DemoApp.launch

    def launch_and_look(app: DemoApp, host: str, port: int | None = None, **options: object) -> None:
        launch(app, host, port, prevent_thread_lock=True, quiet=True)  # returns instead of serving forever
        try:
            with urllib.request.urlopen(app.blocks.local_url, timeout=30) as response:
                served.update(url=app.blocks.local_url, page=response.read().decode())
        finally:
            app.blocks.close()

    monkeypatch.setattr(DemoApp, "launch", launch_and_look)
    assert main(["demo", "--bundle", str(cached_bundle()), "--backend", "onnxruntime", "--port", str(port),
                 "--no-examples"]) == 0
    assert served["url"] == f"http://127.0.0.1:{port}/" and "edge-medsam demo" in served["page"]


def test_the_demo_command_says_when_there_is_no_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from edge_medsam.cli import main, predict

    monkeypatch.setattr(predict, "DEMO_BUNDLE", tmp_path / "missing")
    assert main(["demo"]) == 2
    assert "no --bundle given and this installation has no demo bundle (fix: pass --bundle PATH" in capsys.readouterr().err


TORCH_FREE = """
import sys
from pathlib import Path
from edge_medsam.cli import main  # every command module loads
from edge_medsam.apps.demo.document import PNG, load_document
from edge_medsam.apps.demo.engine import DemoEngine
from edge_medsam.apps.demo.export import export_mask
from edge_medsam.apps.demo.session import DemoSession
from edge_medsam.io import ReadLimits

bundle, picture, out = sys.argv[1:]
session = DemoSession(DemoEngine.open(bundle, "onnxruntime", threads=1),
                      load_document([picture], ["picture.png"], ReadLimits(), 2**20))
session.add_point(20, 20, True)
export_mask(session, PNG, Path(out))
assert "torch" not in sys.modules
"""


def test_the_demo_s_model_side_runs_without_torch(inputs: dict[str, Path], tmp_path: Path) -> None:
    """In a process where importing torch fails, a session segments, refines and exports (Gradio aside)."""
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('the demo must not import torch')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(root)])}
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(cached_bundle()), str(inputs["picture"]),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "edge-medsam-mask.png").is_file()


def test_a_gzip_compressed_dicom_upload_is_read_as_dicom(tmp_path: Path) -> None:
    import gzip

    import pydicom.data

    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    packed = tmp_path / "ct.dcm.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    document = load_document([packed], ["ct.dcm.gz"], LIMITS, 10 * MB)
    assert document.is_volume and document.from_dicom and document.description.startswith("DICOM ")


def test_an_upload_of_two_series_asks_for_one_series_not_for_a_cli_flag(tmp_path: Path) -> None:
    from test_io_dicom_media import two_series

    ct, mr = two_series(tmp_path / "study")
    with pytest.raises(InputError) as err:
        load_document([*ct, *mr], [p.name for p in (*ct, *mr)], LIMITS, 10 * MB)
    assert "2 series" in str(err.value) and "one series at a time" in str(err.value) and "--series" not in str(err.value)
