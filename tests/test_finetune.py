"""Fine-tuning: the distillation loss, resumable training, and the entry point (conf/finetune.yaml, synthetic data)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from safetensors.torch import load_file

import amc.finetune
from amc.artifacts.checkpoint import CheckpointError, save_checkpoint
from amc.artifacts.plan import PlanError, PruningPlan, load_pruned, make_plan, model_checksum, save_pruned
from amc.data.synthetic import synthetic
from amc.finetune import run
from amc.measure.accuracy import evaluate_accuracy
from amc.models import build_model
from amc.pruning.groups import PrunableNetwork
from amc.pruning.selection import select_channels
from amc.pruning.surgery import prune_copy
from amc.training.loop import channels_last_is_safe, distillation_loss, read_training_state, train_model

REPO = Path(__file__).resolve().parents[1]
INPUT = (1, 3, 16, 16)  # conf/data/synthetic.yaml: 3 channels, 16x16, 4 classes, 512 train images
# a ResNet-8 of width 8 (8/16/32 channels): an import path, so it needs model_allow
TINY = {"target": "amc.models.resnet.CifarResNet", "kwargs": {"depth": 8, "width": 8}}
ALLOW = ["amc.models.resnet"]


def _tiny(num_classes: int = 4) -> torch.nn.Module:
    return build_model(TINY["target"], in_channels=3, num_classes=num_classes, allow=ALLOW, **TINY["kwargs"])


class Killed(Exception):
    """Stands in for a kill between two epochs."""


def _data():
    return synthetic()  # the defaults of conf/data/synthetic.yaml


def _pruned_dir(root: Path, *, num_classes: int = 4) -> Path:
    """A trained tiny base checkpoint and a 50%-kept copy with noisy weights, saved as a pruned dir."""
    torch.manual_seed(0)
    base = _tiny(num_classes)
    if num_classes == 4:
        train_model(base, _data(), epochs=4, lr=0.1, batch_size=128, progress=False)
    base.eval()
    spec = {"target": TINY["target"], "in_channels": 3, "num_classes": num_classes, "kwargs": TINY["kwargs"]}
    checkpoint = save_checkpoint(base, root / "base.safetensors", model_spec=spec)
    net = PrunableNetwork(base, INPUT)
    kept = select_channels(net, net.channel_counts([0.5] * net.num_groups))
    pruned = prune_copy(net, kept)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in pruned.parameters():
            p.add_(0.3 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    info = {**spec, "checksum": model_checksum(base), "checkpoint": str(checkpoint)}
    plan = make_plan(net, kept, base_model=info, settings={"method": "uniform"})
    save_pruned(pruned, plan, root / "pruned")
    return root / "pruned"


def _cfg(pruned: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="finetune", overrides=[
            "data=synthetic", f"pruned={pruned}", "device=cpu", "epochs=3", "lr=0.05", "progress=false",
            f"model_allow=[{','.join(ALLOW)}]", *overrides,
        ])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pruned_dir(tmp_path_factory.mktemp("finetune"))


@pytest.fixture(scope="module")
def finished(pruned: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ft") / "run"
    return out, run(_cfg(pruned), out)


# -- the loss -------------------------------------------------------------------------------------------------------
def test_distillation_loss_is_ce_at_alpha_0_and_kl_vanishes_for_equal_logits() -> None:
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    ce = F.cross_entropy(student, labels)
    assert torch.equal(distillation_loss(student, labels, teacher, alpha=0.0), ce)
    assert torch.equal(distillation_loss(student, labels, alpha=0.0), ce)  # no teacher needed
    assert distillation_loss(student, labels, student.clone(), alpha=1.0, temperature=4.0).abs() < 1e-6
    # alpha=0.5 against the textbook formula: KL(p_teacher || p_student) at T, scaled by T^2
    t = 3.0
    p_t, log_p_s = F.softmax(teacher / t, 1), F.log_softmax(student / t, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * t * t
    assert kl > 0
    torch.testing.assert_close(distillation_loss(student, labels, teacher, alpha=0.5, temperature=t), 0.5 * ce + 0.5 * kl)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, labels, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, labels, teacher, alpha=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(student, labels, alpha=0.5)


def test_pruned_shortcuts_train_in_nchw_instead_of_crashing() -> None:
    """A strided 1x1 conv with < 8 input channels crashes oneDNN's channels-last backward (see channels_last_is_safe)."""
    assert channels_last_is_safe(build_model("resnet20", in_channels=1, num_classes=10), channel_block=16)
    narrow = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 8, 1, stride=2),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    assert not channels_last_is_safe(narrow)
    shortcut = torch.nn.Conv2d(12, 24, 1, stride=2)  # below AVX-512's 16-channel block, above AVX2's 8
    assert channels_last_is_safe(shortcut, channel_block=8) and not channels_last_is_safe(shortcut, channel_block=16)
    history = train_model(narrow, synthetic(train_size=128, test_size=16, reward_val_size=16), epochs=1,
                          schedule="cosine", batch_size=32, progress=False)
    assert len(history) == 1 and narrow[1].weight.is_contiguous()


# -- resumable training ---------------------------------------------------------------------------------------------
def test_killed_training_resumes_from_its_last_epoch_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = synthetic(train_size=256, test_size=64, reward_val_size=64)
    torch.manual_seed(0)
    start = _tiny()
    teacher = copy.deepcopy(start)
    kw = dict(epochs=3, lr=0.05, schedule="cosine", warmup_epochs=0.0, batch_size=64, progress=False,
              teacher=teacher, kd_alpha=0.5, kd_temperature=4.0)
    straight = copy.deepcopy(start)
    expected = train_model(straight, data, **kw)

    def kill_after_second(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 1:
            raise Killed

    state_dir = tmp_path / "state"
    with pytest.raises(Killed):
        train_model(copy.deepcopy(start), data, state_dir=state_dir, on_epoch_end=kill_after_second, **kw)
    assert read_training_state(state_dir)["epoch"] == 2
    assert sorted(p.name for p in state_dir.iterdir()) == ["model.safetensors", "optimizer.pt", "state.json"]

    seen: list[int] = []
    resumed = copy.deepcopy(start)  # a fresh process: the weights come from the state
    history = train_model(resumed, data, state_dir=state_dir, on_epoch_end=lambda e, m: seen.append(e), **kw)
    assert seen == [2] and [h["epoch"] for h in history] == [1, 2, 3]
    assert read_training_state(state_dir)["epoch"] == 3
    for key in ("loss", "kd_loss", "reward_val_acc"):
        assert [h[key] for h in history] == pytest.approx([h[key] for h in expected], rel=1e-5), key
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="lr=0.05 there, 0.1 here"):
        train_model(copy.deepcopy(start), data, state_dir=state_dir, **{**kw, "lr": 0.1})


# -- the entry point ------------------------------------------------------------------------------------------------
def test_finetune_recovers_accuracy_and_writes_a_loadable_model(pruned: Path, finished) -> None:
    out, metrics = finished
    before, after = metrics["before"], metrics["after"]
    assert before["reward_val_acc"] < metrics["teacher"]["reward_val_acc"]  # the damage is real
    assert after["reward_val_acc"] >= before["reward_val_acc"] and after["test_acc"] >= before["test_acc"]
    assert after["reward_val_acc"] > before["reward_val_acc"] + 0.05
    assert metrics["epochs"] == 3 and len(metrics["history"]) == 3 and metrics["resumed_from_epoch"] == 0
    assert metrics["kd"] == {"alpha": 0.5, "temperature": 4.0} and "kd_loss" in metrics["history"][0]
    assert metrics["train_seconds"] > 0 and json.loads((out / "metrics.json").read_text()) == metrics

    model = load_pruned(out / "finetuned", allow=ALLOW)
    data = _data()
    assert evaluate_accuracy(model, data, split="test") == after["test_acc"]
    assert evaluate_accuracy(model, data, split="reward_val") == after["reward_val_acc"]
    final = load_file(str(out / "training_state" / "model.safetensors"))  # the trained weights, last epoch
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, final[name]), name
    source = load_file(str(pruned / "pruned.safetensors"))
    assert not torch.equal(final["conv1.weight"], source["conv1.weight"])

    src_plan, plan = PruningPlan.load(pruned / "plan.json"), PruningPlan.load(out / "finetuned" / "plan.json")
    assert [g["kept_indices"] for g in plan.groups] == [g["kept_indices"] for g in src_plan.groups]
    assert plan.base_model == src_plan.base_model and plan.macs_after == src_plan.macs_after
    assert plan.accuracy == after
    assert plan.settings["method"] == "uniform" and plan.settings["finetuned"]["epochs"] == 3
    assert plan.settings["finetuned"]["kd"] == {"alpha": 0.5, "temperature": 4.0}
    assert plan.settings["finetuned"]["accuracy_before"] == before
    assert any((out / "tb").iterdir())


def test_finetune_without_distillation_runs_label_only(pruned: Path, finished, tmp_path: Path) -> None:
    metrics = run(_cfg(pruned, "epochs=1", "kd.alpha=0"), tmp_path / "run")
    assert metrics["kd"]["alpha"] == 0.0 and "kd_loss" not in metrics["history"][0]
    assert metrics["teacher"] == finished[1]["teacher"]
    assert metrics["history"][0]["loss"] != finished[1]["history"][0]["loss"]
    assert load_pruned(tmp_path / "run" / "finetuned", allow=ALLOW)(torch.randn(2, *INPUT[1:])).shape == (2, 4)


def test_finetune_resumes_after_a_kill(pruned: Path, finished, tmp_path: Path, monkeypatch) -> None:
    def killing_train_model(*args, on_epoch_end, **kwargs):
        def hook(epoch: int, metrics: dict[str, float]) -> None:
            on_epoch_end(epoch, metrics)
            if epoch == 0:
                raise Killed
        return train_model(*args, on_epoch_end=hook, **kwargs)

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(amc.finetune, "train_model", killing_train_model)
        with pytest.raises(Killed):
            run(_cfg(pruned), out)
    assert not (out / "metrics.json").exists() and read_training_state(out / "training_state")["epoch"] == 1
    with pytest.raises(FileExistsError, match="resume="):  # a new run into it is refused
        run(_cfg(pruned), out)
    with pytest.raises(ValueError, match="lr: recorded 0.05, given 0.1"):
        run(_cfg(pruned, f"resume={out}", "lr=0.1"), tmp_path / "elsewhere")

    metrics = run(_cfg(pruned, f"resume={out}"), tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs"] == 3
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    expected = finished[1]
    assert metrics["before"] == expected["before"]
    assert [h["loss"] for h in metrics["history"]] == pytest.approx([h["loss"] for h in expected["history"]], rel=1e-5)
    assert metrics["after"]["reward_val_acc"] == pytest.approx(expected["after"]["reward_val_acc"], abs=1 / 128)


def test_finished_run_is_never_overwritten(pruned: Path, finished) -> None:
    out, _ = finished
    stamp = (out / "metrics.json").stat().st_mtime_ns
    for overrides in ((), (f"resume={out}",)):
        with pytest.raises(FileExistsError, match="finished"):
            run(_cfg(pruned, *overrides), out)
    assert (out / "metrics.json").stat().st_mtime_ns == stamp


def test_pruned_dir_without_plan_is_rejected_before_any_work(pruned: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "pruned.safetensors").write_bytes((pruned / "pruned.safetensors").read_bytes())
    with pytest.raises(PlanError, match=f"pruned={bare} lacks plan.json"):
        run(_cfg(bare), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        run(_cfg(tmp_path / "nowhere"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_teacher_model_needs_model_allow(pruned: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model_allow=\[amc\.models\.resnet\]"):
        run(_cfg(pruned, "model_allow=[]"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_teacher_that_does_not_fit_the_data_is_rejected_before_any_work(tmp_path: Path) -> None:
    ten = _pruned_dir(tmp_path, num_classes=10)
    with pytest.raises(ValueError, match=r"takes 3 input channels and 10 classes, but data synthetic has 3 and 4"):
        run(_cfg(ten), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_resumes_after_sigkill_and_never_touches_a_finished_run(pruned: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "amc.finetune", "data=synthetic", f"pruned={pruned}", "device=cpu", "epochs=8",
            "progress=false", f"model_allow=[{','.join(ALLOW)}]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    state = run_dir / "training_state" / "state.json"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=60)
    killed_at = read_training_state(run_dir / "training_state")["epoch"]
    assert 1 <= killed_at < 8 and not (run_dir / "metrics.json").exists()

    done = subprocess.run([*args, f"resume={run_dir}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= killed_at and [h["epoch"] for h in metrics["history"]] == list(range(1, 9))
    assert metrics["command"].startswith("python -m amc.finetune") and f"resume={run_dir}" in metrics["command"]
    assert load_pruned(run_dir / "finetuned", allow=ALLOW)(torch.randn(2, *INPUT[1:])).shape == (2, 4)

    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    again = subprocess.run([*args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "amc-finetune: error:" in again.stderr and "finished fine-tune" in again.stderr
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*")) if p.is_file()} == digest
