"""Helpers shared by the hydra entry points: device, data and model-spec resolution, clear errors, preflight checks."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from amc.artifacts.checkpoint import load_model
from amc.data.base import DataSplits
from amc.measure.runtime import resolve_round_to, resolve_runtime


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    return dev


def resolve_runtime_settings(cfg: DictConfig, round_to_key: str) -> None:
    """Resolve ``runtime`` (``auto``: onnxruntime when installed, else torch) and the channel grid at
    ``round_to_key`` (``auto``: the runtime's grid on this CPU) in place, so a run dir records what was used."""
    runtime = resolve_runtime(str(cfg.get("runtime") or "auto"))
    try:
        round_to = resolve_round_to(OmegaConf.select(cfg, round_to_key), runtime)
    except ValueError as e:
        raise ValueError(f"{round_to_key}: {e}") from None
    with open_dict(cfg):
        cfg.runtime = runtime
        OmegaConf.update(cfg, round_to_key, round_to, merge=False)


def require_batch_sizes(value: Any, key: str) -> list[int]:
    """A non-empty list of integers >= 1 (batch sizes of a latency measurement), or a ValueError naming ``key``."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{key} must be a non-empty list of integers >= 1 (batch sizes), got {value!r}")
    return [int(v) for v in values]


def build_data(data_cfg: DictConfig) -> DataSplits:
    data = instantiate(data_cfg)
    if not isinstance(data, DataSplits):
        raise TypeError(f"data config {data_cfg.get('_target_')} built {type(data).__name__}, expected DataSplits")
    return data


def model_spec_from_cfg(model_cfg: DictConfig, data: DataSplits) -> dict[str, Any]:
    """Turn a model config (``_target_`` + kwargs) into the JSON spec stored in checkpoints and plans."""
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(cfg, dict)
    target = cfg.pop("_target_", None)
    cfg.pop("_partial_", None)
    if target is None:
        raise ValueError("model config needs a _target_ (a zoo name such as resnet20 or an import path)")
    return {"target": target, "in_channels": data.in_channels, "num_classes": data.num_classes, "kwargs": cfg}


def user_model_spec(cfg: DictConfig, data: DataSplits) -> dict[str, Any] | None:
    """The model a plain state-dict checkpoint holds, from ``model._target_`` (+ kwargs) on the command line, or None."""
    model_cfg = cfg.get("model")
    if model_cfg is not None and not isinstance(model_cfg, DictConfig):
        raise ValueError(f"model={model_cfg!r}: name a plain checkpoint's model with model._target_=<pkg.module.Class> "
                         f"(and +model.<arg>=<value>); zoo checkpoints name their own model")
    if model_cfg is None or model_cfg.get("_target_") is None:
        return None
    spec = model_spec_from_cfg(model_cfg, data)
    for key in ("in_channels", "num_classes"):  # the data decides these; an explicit equal value is redundant
        given = spec["kwargs"].pop(key, None)
        if given is not None and given != spec[key]:
            raise ValueError(f"model.{key}={given} but data {data.name} has {key}={spec[key]}")
    return spec


def model_allow(cfg: DictConfig) -> list[str]:
    """Import prefixes a model name may resolve under: ``model_allow`` and the ``model._target_`` the user typed."""
    allow = list(cfg.get("model_allow") or [])
    target = OmegaConf.select(cfg, "model._target_")
    return [*allow, target] if target else allow


def check_model_fits(model: torch.nn.Module, data: DataSplits, device: torch.device, name: str) -> None:
    """One forward pass of a zero batch of the data's shape must give (1, num_classes) logits."""
    x = torch.zeros(1, data.in_channels, *data.image_size, device=device)
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise ValueError(f"model {name} does not run on {data.name} images of shape {tuple(x.shape[1:])}: "
                         f"{str(e).splitlines()[0]}") from e
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (1, data.num_classes):
        raise ValueError(f"model {name} outputs {shape} for one image; data {data.name} needs (1, {data.num_classes}) "
                         f"logits: build it for {data.num_classes} classes (e.g. +model.num_classes={data.num_classes})")


def load_checkpoint_for(
    path: str, data: DataSplits, device: torch.device, *, allow: Sequence[str] = (),
    model_spec: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load our checkpoint, or a plain state dict with ``model_spec``, and check that the model fits the data.

    Model names resolve to the zoo or under ``allow`` (``model_allow(cfg)``)."""
    model, spec = load_model(path, model_spec=model_spec, map_location=device, allow=allow)
    if (spec["in_channels"], spec["num_classes"]) != (data.in_channels, data.num_classes):
        raise ValueError(f"checkpoint {path} expects {spec['in_channels']} input channels and {spec['num_classes']} "
                         f"classes; data {data.name} has {data.in_channels} and {data.num_classes}")
    check_model_fits(model, data, device, f"{spec['target']} ({path})")
    return model, spec


# Expected errors of a user's input (bad settings, missing or foreign files, a finished run dir): printed as one
# clear line, not a traceback. CheckpointError and PlanError are ValueErrors.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


def require_positive_ints(cfg: DictConfig, *keys: str, prefix: str = "") -> None:
    """Each dotted ``key`` of ``cfg`` must be an integer >= 1 (not a bool); the error names ``prefix + key``."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix}{key} must be an integer >= 1, got {value!r}")


def full_errors() -> bool:
    """HYDRA_FULL_ERROR=1 shows the full traceback of expected errors too (the debug switch)."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn an expected error into ``<prog>: error: <message>`` on stderr and exit code 2."""
    try:
        yield
    except USER_ERRORS as e:
        if full_errors():
            raise
        print(f"{prog}: error: {e}\n(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def task_config(config: DictConfig) -> DictConfig:
    """The job's config without the ``hydra`` node (what the task function receives)."""
    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def command_line(prog: str, overrides: list[str]) -> str:
    """``python -m <prog> <overrides>`` with shell-unsafe overrides quoted."""
    quoted = [o if all(c.isalnum() or c in "=._-/:,+@" for c in o) else f"'{o}'" for o in overrides]
    return " ".join(["python -m", prog, *quoted])


def plain_settings(cfg: DictConfig, keys: Sequence[str]) -> dict[str, Any]:
    """``cfg``'s values at ``keys`` as plain data (resolved): what a training run records and a resume must repeat."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return {k: plain.get(k) for k in keys}


def check_interrupted_run(run_dir: Path, *, resume: bool, what: str, markers: Sequence[str], settings_file: str,
                          given: dict[str, Any]) -> None:
    """An unfinished training run dir: without ``resume`` it must hold none of ``markers`` (an interrupted run is never
    overwritten); with it, the settings it recorded in ``settings_file`` must be ``given``."""
    if not resume:
        found = [n for n in markers if (run_dir / n).exists()]
        if found:
            raise FileExistsError(f"{run_dir} holds an interrupted {what} ({', '.join(found)}); continue it with "
                                  f"resume={run_dir} or choose another hydra.run.dir")
        return
    if not (run_dir / settings_file).is_file():
        raise FileNotFoundError(f"resume={run_dir} holds no {what} ({settings_file} missing)")
    recorded = json.loads((run_dir / settings_file).read_text())
    differing = [k for k in given if recorded.get(k) != given[k]]
    if differing:
        lines = "; ".join(f"{k}: recorded {recorded.get(k)!r}, given {given[k]!r}" for k in differing)
        raise ValueError(f"resume={run_dir}: settings differ from the run's own ({lines}); repeat its overrides "
                         f"(see {run_dir}/.hydra/overrides.yaml)")


def training_interrupted(prog: str, run_dir: Path, state: dict[str, Any] | None, overrides: list[str]) -> None:
    """What a Ctrl-C'd training command prints: how to continue from its last finished epoch (``state``), if any;
    exits 130."""
    if state is None:
        print(f"\n{prog}: interrupted before the first epoch ended; nothing to resume in {run_dir}", file=sys.stderr)
    else:
        args = [o for o in overrides if not o.startswith("resume=")]
        print(f"\n{prog}: interrupted after epoch {state['epoch']}; continue with: "
              f"{command_line(prog.replace('amc-', 'amc.'), [*args, f'resume={run_dir}'])}", file=sys.stderr)
    raise SystemExit(130) from None


class PreflightCallback(Callback):
    """A hydra callback that checks a command before hydra creates or writes anything in its run dir.

    Hydra saves ``.hydra/config.yaml`` and opens the job log *before* the task function runs, so a command that the
    task function refuses (say, a finished run dir) would already have rewritten that run's recorded config. Entry
    points subclass this, set ``prog`` and implement :meth:`check`: it raises an expected error to refuse the
    command, or returns the run dir to use (a resumed search runs in its own dir). The same check runs again inside
    ``run()``, so tests and library callers get it too.
    """

    prog = "amc"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return run_dir

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        planned = Path(str(config.hydra.run.dir))
        with user_errors(self.prog):
            run_dir = self.check(task_config(config), planned)
        if run_dir != planned:
            with read_write(config), open_dict(config):
                config.hydra.run.dir = str(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        with user_errors(self.prog):
            if (sweep_dir / "multirun.yaml").exists():
                raise FileExistsError(f"{sweep_dir} holds an earlier multirun (multirun.yaml); its runs are kept as "
                                      f"they are: choose a new hydra.sweep.dir")
