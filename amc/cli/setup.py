"""A search's (and ``amc.apply``'s) setup from its config: data, base model, groups, calibration statistics, budget
wall, latency table and env; and the env an agent trains on (one, or ``env.n_envs`` workers)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from amc.artifacts.plan import model_checksum
from amc.cli import build_data, load_checkpoint_for, model_allow, resolve_device, user_model_spec
from amc.envs import ChannelPruningEnv
from amc.measure.latency_measure import cached_table
from amc.measure.latency_table import LatencyTable, table_identity
from amc.measure.runtime import export_onnx, resolve_threads
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.runs.calibration import calibrate
from amc.runs.setup import Setup

log = logging.getLogger(__name__)


def build_setup(cfg: DictConfig, run_dir: Path) -> Setup:
    """Data, base model, groups, calibration statistics, budget wall and environment."""
    p, e = cfg.protocol, cfg.env
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base, spec = load_checkpoint_for(cfg.checkpoint, data, device, allow=model_allow(cfg),
                                     model_spec=user_model_spec(cfg, data))
    net = PrunableNetwork(base, (1, data.in_channels, *data.image_size), exclude=list(e.exclude), round_to=e.round_to,
                          graph_time_limit=e.get("graph_time_limit"))
    checksum = model_checksum(base)
    if cfg.runtime == "onnxruntime":  # a model the exporter cannot convert fails now, not after the search
        export_onnx(base, net.input_shape)
    table = build_latency_table(cfg, net, device, run_dir) if p.resource == "latency" else None
    budget = None
    if p.resource is not None:
        budget = ResourceBudget(net, p.resource, float(p.target), e.lbound, latency_table=table)
    reconstructor = None
    if e.reconstruction:
        c = e.calibration
        reconstructor = calibrate(net, data, checksum=checksum,
                                  data_key=OmegaConf.to_container(cfg.data, resolve=True),
                                  cache_dir=cfg.get("calibration_cache_dir"), num_images=c.num_images,
                                  positions_per_image=c.positions_per_image, batch_size=c.batch_size, ridge=c.ridge,
                                  seed=cfg.seed, device=device)
    engine = PruningEngine(net, selection=e.selection, reconstructor=reconstructor, bn_data=data,
                           bn_batches=e.bn_recalibration_batches, device=device)
    env = ChannelPruningEnv(net, engine, data, reward=p.reward, budget=budget, lbound=e.lbound, rbound=e.rbound,
                            eval_images=e.eval_images, eval_batch_size=e.eval_batch_size, device=device,
                            latency_table=table, release_memory_per_episode=e.release_memory,
                            budget_in_state=bool(e.get("budget_in_state", False)),
                            state_extras=tuple(e.get("state_extras") or ()),
                            early_stop_margin=OmegaConf.select(e, "early_stop.margin"),
                            early_stop_z=OmegaConf.select(e, "early_stop.z", default=3.0),
                            early_stop_min_images=OmegaConf.select(e, "early_stop.min_images", default=500),
                            target_range=None if p.get("target_range") is None else tuple(p.target_range),
                            fold_bn=bool(e.get("fold_bn", False)), channels_last=bool(e.get("channels_last", False)),
                            reward_baseline=str(e.get("reward_baseline", "none")),
                            baseline_points=int(e.get("baseline_points", 5)))
    engine.bn_channels_last = env.channels_last  # the env checked that this model runs channels-last
    base_info = {**spec, "checksum": checksum, "checkpoint": str(cfg.checkpoint)}
    return Setup(data, net, engine, env, budget, table, base_info, device)


def network_setups(cfg: DictConfig, setup: Setup, run_dir: Path) -> dict[str, Setup]:
    """The run's own network (``setup``) and every checkpoint of ``env.networks``, each built once with its own
    calibration and budget wall; keyed by a name (the model's target, made unique). Set-up cost printed per network."""
    setups = {network_name(setup, set()): setup}
    for i, path in enumerate(cfg.env.networks):
        sub = cfg.copy()
        with open_dict(sub):
            sub.checkpoint = str(path)
        start = time.perf_counter()
        try:
            other = build_setup(sub, run_dir)
        except ValueError as e:  # e.g. a budget the network cannot reach: name it before any training
            raise ValueError(f"env.networks[{i}]={path}: {e}") from None
        name = network_name(other, set(setups))
        setups[name] = other
        log.info("network %s (%s): %d groups, set-up %.1f s", name, path, other.net.num_groups,
                 time.perf_counter() - start)
    return setups


def network_name(setup: Setup, taken: set[str]) -> str:
    """The model's target and its arguments (e.g. resnet20, resnet20_width8), with ``#2``, ``#3``... when another
    network of the run has that name."""
    kwargs = setup.base_info.get("kwargs") or {}
    name = str(setup.base_info["target"]).rsplit(".", 1)[-1] + "".join(f"_{k}{v}" for k, v in sorted(kwargs.items()))
    k = 2
    unique = name
    while unique in taken:
        unique, k = f"{name}#{k}", k + 1
    return unique


def build_latency_table(cfg: DictConfig, net: PrunableNetwork, device: torch.device, run_dir: Path) -> LatencyTable:
    """The latency protocol's table in ``cfg.runtime``: the run's own (a resumed run keeps the table its budget was set
    with), a given one (``protocol.latency_table.path``, refused if measured under other conditions), or from the
    cache (``cache_dir``), else measured now; saved in the run dir."""
    t, table_path = cfg.protocol.latency_table, run_dir / "latency_table.json"
    threads = resolve_threads(t.get("threads"))
    identity = table_identity(net, runtime=cfg.runtime, threads=threads, batch_size=t.batch_size,
                              max_points=t.max_points)
    if table_path.exists():
        return LatencyTable.load(table_path, net, batch_size=t.batch_size, expect=identity)
    if t.get("path"):
        table = LatencyTable.load(t.path, net, batch_size=t.batch_size, expect=identity)
    else:
        start = time.perf_counter()
        table = cached_table(net, t.get("cache_dir"), runtime=cfg.runtime, threads=threads, batch_size=t.batch_size,
                             max_points=t.max_points, device=device, repeats=t.repeats,
                             calibration_models=t.calibration_models, seed=cfg.seed)
        log.info("latency table ready in %.1f s", time.perf_counter() - start)
    table.save(table_path)
    return table


def build_worker_env(cfg: dict[str, Any], run_dir: str) -> ChannelPruningEnv:
    """The env of a search, built again from its (plain, resolved) config: a spawned worker's env."""
    return build_setup(OmegaConf.create(cfg), Path(run_dir)).env


def parallel_env(cfg: DictConfig, setup: Setup, run_dir: Path):  # -> VecEnv (stable_baselines3 is imported lazily)
    """``env.n_envs`` worker processes, each with a copy of ``setup.env`` (forked on CPU; rebuilt from the config
    with spawn) and its share of the threads. Close it when done."""
    from amc.agents.vec import default_start_method, make_vec_env, threads_per_env

    method = cfg.env.get("start_method") or default_start_method(setup.device)
    if method == "fork":
        env = setup.env
        make_env = lambda: env  # noqa: E731  (inherited by the forked worker, never pickled)
    else:
        make_env = partial(build_worker_env, OmegaConf.to_container(cfg, resolve=True), str(run_dir))
    n = int(cfg.env.n_envs)
    log.info("%d parallel environments (%s), %d thread(s) each", n, method, threads_per_env(n))
    return make_vec_env(make_env, n, start_method=method, device=setup.device)


@contextmanager
def agent_env(cfg: DictConfig, setup: Setup, run_dir: Path) -> Iterator[Any]:
    """The env an agent trains on: ``setup.env``, or its ``env.n_envs`` workers (closed on exit)."""
    if int(cfg.env.get("n_envs", 1)) == 1:
        yield setup.env
        return
    venv = parallel_env(cfg, setup, run_dir)
    try:
        yield venv
    finally:
        venv.close()
