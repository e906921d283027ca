"""Every command on every data source: a user's own model (a plain state dict of classic code that flattens with
``.view``) on an RGB image folder through prune -> fine-tune -> export, and the refusals a user meets on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from amc.artifacts.checkpoint import CheckpointError
from amc.export import main as export_main
from amc.finetune import run as finetune_run
from amc.inspect import run as inspect_run
from amc.prune import run as prune_run
from tests.helpers import ViewLeNet

MODEL = ["model._target_=tests.helpers.ViewLeNet", "model_allow=[tests.helpers]"]


def _folder(root: Path, per_class: int = 6) -> Path:
    """An RGB image folder of two classes (red-ish and blue-ish noise), 20x24 images (resized and cropped to 16)."""
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("val", 3)):
        for label, channel in (("red", 0), ("blue", 2)):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = torch.randint(0, 90, (20, 24, 3), generator=gen, dtype=torch.uint8)
                pixels[..., channel] += 160
                Image.fromarray(pixels.numpy()).save(root / split / label / f"{i}.png")
    return root


def _compose(name: str, *overrides: str):
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("every_source")
    torch.manual_seed(0)
    checkpoint = root / "lenet.pth"
    torch.save(ViewLeNet().state_dict(), checkpoint)
    return _folder(root / "images"), checkpoint


def _data(folder: Path) -> list[str]:
    return ["data=image_folder", f"data.root={folder}", "data.image_size=16", "data.reward_val_size=2"]


def test_a_view_model_on_an_image_folder_prunes_fine_tunes_and_exports(plain, tmp_path: Path) -> None:
    folder, checkpoint = plain
    rows = prune_run(_compose("prune", *_data(folder), *MODEL, f"checkpoint={checkpoint}", "device=cpu",
                              "target_macs_ratio=0.5", "round_to=1", "calibration.num_images=8",
                              "calibration.batch_size=4", "bn_recalibration.num_batches=1",
                              "bn_recalibration.batch_size=4", "latency.repeats=2", "latency.warmup=1"), tmp_path / "p")
    assert rows[-1]["macs"] <= 0.5 * rows[0]["macs"]
    pruned = tmp_path / "p" / "reconstruction"
    result = finetune_run(_compose("finetune", *_data(folder), f"pruned={pruned}", "device=cpu", "epochs=1",
                                   "batch_size=4", "progress=false", "model_allow=[tests.helpers]"), tmp_path / "ft")
    assert result["after"]["test_acc"] >= 0
    out = tmp_path / "onnx"
    assert export_main([str(pruned), "--out", str(out), "--data", "image_folder", "--data-root", str(folder),
                        "--model-allow", "tests.helpers", "--repeats", "2", "--warmup", "1"]) == 0
    report = json.loads((out / "export_report.json").read_text())
    assert report["parity"]["ok"] and report["parity"]["num_images"] == 6 and report["dataset"] == "image_folder"


def test_export_of_an_image_folder_model_without_a_root_says_what_to_pass(plain, tmp_path: Path, capsys) -> None:
    folder, checkpoint = plain
    prune_run(_compose("prune", *_data(folder), *MODEL, f"checkpoint={checkpoint}", "device=cpu", "round_to=1",
                       "calibration.num_images=8", "calibration.batch_size=4", "bn_recalibration.num_batches=1",
                       "bn_recalibration.batch_size=4", "latency.repeats=1", "latency.warmup=0"), tmp_path / "p")
    assert export_main([str(tmp_path / "p" / "selection_only"), "--out", str(tmp_path / "x"), "--model-allow",
                        "tests.helpers"]) == 2
    assert "image_folder" in capsys.readouterr().err  # offered among the --data choices
    assert export_main([str(tmp_path / "p" / "selection_only"), "--out", str(tmp_path / "x"), "--data",
                        "image_folder", "--model-allow", "tests.helpers"]) == 2
    assert "--data-root DIR" in capsys.readouterr().err


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not weights\n")
    with pytest.raises(CheckpointError, match=r"README\.md is not a checkpoint \(neither a safetensors file nor a "
                                              r"torch\.save file\)"):
        inspect_run(_compose("inspect", "data=synthetic", f"checkpoint={readme}", "device=cpu"))
