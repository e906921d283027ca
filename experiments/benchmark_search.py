"""Benchmark of the search: seconds per episode, and its ratio to one accuracy pass over reward-val, in one run.

    python experiments/benchmark_search.py                          # ResNet-20 and ResNet-56, 50% MACs
    python experiments/benchmark_search.py --models resnet56 --episodes 10
    OMP_NUM_THREADS=1 python experiments/benchmark_search.py --rss-episodes 300 [--no-release]   # memory, ResNet-20

Per model: the env and DDPG agent of ``python -m amc.search`` (AMC settings, 2000 reward-val images per episode,
selection + reconstruction), ``--episodes`` warm-up episodes (random actions) then ``--episodes`` learning episodes
(one gradient step per transition), timed separately, with reward-val passes of the original model (all 5000 images)
measured in the same process before and after. Uses the committed Fashion-MNIST baselines.

``--levers``: per model, seconds per episode of the same random policies with each speed lever of issue 10 off and
on, interleaved in one process: the plain env, adaptive evaluation (``env.early_stop.margin=0.05``) and ``n_envs=2``
worker processes, and BN folded into the convs of each evaluated copy (``env.fold_bn``), with the largest change of
the reward-val accuracy it causes (``python experiments/benchmark_search.py --levers --models resnet20 resnet56
mobilenet_v2``).

``--rss-episodes N``: resident memory (RSS) of N episodes of random policies through the same env (first model of
``--models``), printed every 10 episodes, with the largest deviation after episode 20 from the value at episode 20
(flat within 10% is the target). ``--no-release`` skips the env's per-episode ``release_memory()`` (gc +
``malloc_trim``) to show what it saves; run each variant in its own process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from torch import nn

    from amc.data.base import DataSplits
    from amc.envs import ChannelPruningEnv
    from amc.pruning.groups import PrunableNetwork

BASELINES = Path("experiments/baselines/fashion_mnist")


def build_env(model_name: str, *, target: float) -> tuple[nn.Module, DataSplits, PrunableNetwork, ChannelPruningEnv]:
    """The search's env on a committed baseline: (model, data, net, env)."""
    from amc.artifacts.checkpoint import load_checkpoint
    from amc.data import fashion_mnist
    from amc.envs import ChannelPruningEnv
    from amc.pruning.budget import ResourceBudget
    from amc.pruning.engine import PruningEngine
    from amc.pruning.groups import PrunableNetwork
    from amc.pruning.reconstruction import Reconstructor

    data = fashion_mnist()
    ckpt = BASELINES / model_name / "model.safetensors"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: run from the repository root (the committed baselines)")
    model = load_checkpoint(ckpt, allow=["amc.models"])[0]  # our committed baselines name our own package
    net = PrunableNetwork(model, (1, 1, 28, 28))
    engine = PruningEngine(net, reconstructor=Reconstructor.calibrate(net, data))
    env = ChannelPruningEnv(net, engine, data, budget=ResourceBudget(net, "macs", target, 0.2), eval_images=2000)
    return model, data, net, env


def bench_one(model_name: str, *, target: float, episodes: int, threads: int) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    from amc.agents import make_agent
    from amc.measure.accuracy import evaluate_accuracy

    class EpisodeTimes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def _on_step(self) -> bool:
            if self.locals["dones"][0]:
                self.ends.append(time.perf_counter())
            return True

    torch.set_num_threads(threads)
    model, data, net, env = build_env(model_name, target=target)

    def reward_val_pass() -> float:
        t = time.perf_counter()
        evaluate_accuracy(model, data, split="reward_val")
        return time.perf_counter() - t

    passes = [reward_val_pass() for _ in range(3)]
    agent = make_agent("ddpg", env, episode_length=net.num_groups, warmup_episodes=episodes)
    times = EpisodeTimes()
    start = time.perf_counter()
    agent.learn(total_timesteps=2 * episodes * net.num_groups, callback=times)
    passes += [reward_val_pass() for _ in range(3)]
    durations = [b - a for a, b in zip([start, *times.ends[:-1]], times.ends)]
    warmup, learning = statistics.median(durations[:episodes]), statistics.median(durations[episodes:])
    rv = statistics.median(passes)
    return {"model": model_name, "groups": net.num_groups, "warmup_episode_s": warmup, "learning_episode_s": learning,
            "reward_val_pass_s": rv, "warmup_ratio": warmup / rv, "learning_ratio": learning / rv}


# lever name -> (fold BN, channels-last, early-stop margin, workers, eval batch size)
LEVERS = {
    "plain (batch 500)": (False, False, None, 1, 500),
    "fold BN": (True, False, None, 1, 500),
    "batch 250": (False, False, None, 1, 250),
    "channels-last": (False, True, None, 1, 500),
    "early stop 0.05": (False, False, 0.05, 1, 500),
    "n_envs=2": (False, False, None, 2, 500),
    "defaults: fold + channels-last + batch 250": (True, True, None, 1, 250),
    "defaults + early stop + n_envs=2": (True, True, 0.05, 2, 250),
}


def lever_rows(model_name: str, *, target: float, episodes: int, threads: int, seed: int = 0) -> list[dict]:
    """Seconds per episode of the same random policies through the search's env with each speed lever (``LEVERS``)
    alone and combined, measured in one process, interleaved (every lever plays the same two policies in turn), with
    reward-val passes of the original model before and after. One env uses ``threads`` threads; ``n_envs=2`` is two
    forked worker processes with ``threads // 2`` threads each (at least 1). Early stopping stops 0.05 behind the
    best full evaluation (seeded with one full episode)."""
    from amc.agents.vec import make_vec_env, play_policies
    from amc.measure.accuracy import evaluate_accuracy
    from amc.pruning.fold import conv_bn_pairs

    torch.set_num_threads(threads)
    model, data, net, env = build_env(model_name, target=target)
    rng = np.random.default_rng(seed)
    policies = rng.uniform(-1, 1, (episodes, net.num_groups))
    pairs = conv_bn_pairs(net.model)

    def configure(lever: str) -> None:  # benchmark only: the env's switches, toggled on one env
        fold, channels_last, margin, _, batch = LEVERS[lever]
        env.fold_pairs, env.channels_last, env.early_stop_margin, env.eval_batch_size = \
            (pairs if fold else []), channels_last, margin, batch

    def reward_val_pass() -> float:
        t = time.perf_counter()
        evaluate_accuracy(model, data, split="reward_val")
        return time.perf_counter() - t

    def play_one(actions: np.ndarray) -> dict:
        env.reset(seed=seed)
        info: dict = {}
        for a in actions:
            info = env.step(np.array([a], dtype=np.float32))[4]
        return info

    passes = [reward_val_pass() for _ in range(2)]
    play_one(policies[0])  # warm caches; and the early stop's reference: one full evaluation
    venvs = {}
    for lever, (*_, workers, _) in LEVERS.items():
        if workers > 1:  # forked with the lever's switches set
            configure(lever)
            venvs[lever] = make_vec_env(lambda: env, workers, start_method="fork", threads=max(1, threads // workers))
    times: dict[str, list[float]] = {lever: [] for lever in LEVERS}
    accuracy: dict[str, list[float]] = {lever: [] for lever in LEVERS}
    stopped: dict[str, int] = {lever: 0 for lever in LEVERS}
    try:
        for k in range(0, episodes - 1, 2):
            pair = policies[k : k + 2]
            for lever in LEVERS:
                configure(lever)
                t = time.perf_counter()
                infos = play_policies(venvs[lever], pair) if lever in venvs else [play_one(a) for a in pair]
                times[lever].append((time.perf_counter() - t) / 2)
                accuracy[lever] += [i["accuracy"] for i in infos]
                stopped[lever] += sum(bool(i["stopped_early"]) for i in infos)
    finally:
        for venv in venvs.values():
            venv.close()
    passes += [reward_val_pass() for _ in range(2)]
    rv = statistics.median(passes)
    plain = statistics.median(times["plain (batch 500)"])
    rows = []
    for lever, values in times.items():
        s = statistics.median(values)
        notes = []
        if LEVERS[lever][2] is not None:
            notes.append(f"{stopped[lever]}/{len(accuracy[lever])} stopped early")
        else:
            diff = max(abs(a - b) for a, b in zip(accuracy["plain (batch 500)"], accuracy[lever]))
            notes.append(f"max reward-val change {diff * env._eval_total:.0f} of {env._eval_total} images")
        rows.append({"model": model_name, "lever": lever, "episode_s": s, "ratio_to_pass": s / rv,
                     "speed_up": plain / s, "reward_val_pass_s": rv, "note": "; ".join(notes)})
    return rows


def eval_knob_rows(model_name: str, *, target: float, threads: int, rounds: int = 3) -> list[dict]:
    """Seconds to evaluate one uniformly pruned (50% MACs), BN-folded copy on 2000 reward-val images, per evaluation
    batch size and memory format, interleaved over ``rounds`` rounds in one process (median)."""
    from amc.measure.accuracy import evaluate_accuracy
    from amc.pruning.fold import conv_bn_pairs, fold_bn
    from amc.pruning.uniform import solve_uniform

    torch.set_num_threads(threads)
    _, data, net, env = build_env(model_name, target=target)
    model = fold_bn(env.engine.prune_counts(solve_uniform(net, target).counts).model, conv_bn_pairs(net.model))
    variants = {(b, fmt): None for b in (100, 250, 500, 1000) for fmt in ("contiguous", "channels_last")}
    times: dict[tuple[int, str], list[float]] = {v: [] for v in variants}
    accuracy: dict[tuple[int, str], float] = {}
    for _ in range(rounds):
        for batch, fmt in variants:
            m = model.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
            t = time.perf_counter()
            accuracy[(batch, fmt)] = evaluate_accuracy(m, data, split="reward_val", limit=2000, batch_size=batch)
            times[(batch, fmt)].append(time.perf_counter() - t)
    base = statistics.median(times[(500, "contiguous")])
    return [{"model": model_name, "batch": b, "format": fmt, "s": statistics.median(times[(b, fmt)]),
             "speed_up": base / statistics.median(times[(b, fmt)]), "accuracy": accuracy[(b, fmt)]} for b, fmt in variants]


def bn_recal_rows(model_name: str, *, target: float, threads: int, batches: int = 20, rounds: int = 3) -> dict:
    """BN recalibration (``batches`` x 100 training images, as eagleeye's adaptive BN) of one uniformly pruned copy in
    NCHW and channels-last, interleaved over ``rounds`` in one process (median seconds), and how far the two
    recalibrated copies' statistics and reward-val accuracies are apart."""
    import copy

    from amc.measure.accuracy import evaluate_accuracy
    from amc.pruning.bn import recalibrate_bn
    from amc.pruning.uniform import solve_uniform

    torch.set_num_threads(threads)
    _, data, net, env = build_env(model_name, target=target)
    pruned = env.engine.prune_counts(solve_uniform(net, target).counts).model
    times: dict[bool, list[float]] = {False: [], True: []}
    copies: dict[bool, torch.nn.Module] = {}
    for _ in range(rounds):
        for channels_last in (False, True):
            m = copy.deepcopy(pruned)
            t = time.perf_counter()
            copies[channels_last] = recalibrate_bn(m, data, num_batches=batches, channels_last=channels_last)
            times[channels_last].append(time.perf_counter() - t)
    bns = [(n, b) for n, b in copies[False].named_modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
    other = dict(copies[True].named_modules())
    stat_diff = max(float((b.running_var - other[n].running_var).abs().max() / b.running_var.abs().max())
                    for n, b in bns)
    acc = {k: evaluate_accuracy(m, data, split="reward_val", limit=2000) for k, m in copies.items()}
    nchw, cl = statistics.median(times[False]), statistics.median(times[True])
    return {"model": model_name, "nchw_s": nchw, "channels_last_s": cl, "speed_up": nchw / cl,
            "max_rel_var_diff": stat_diff, "accuracy_diff": abs(acc[False] - acc[True]), "batches": batches}


def rss_run(model_name: str, *, target: float, episodes: int, threads: int, release: bool, every: int = 10,
            seed: int = 0) -> list[tuple[int, int]]:
    """(episode, RSS bytes) every ``every`` episodes of random policies through the env (episode 0: before)."""
    import amc.envs.channel_pruning as env_module
    from amc.measure.memory import rss_bytes

    torch.set_num_threads(threads)
    if not release:  # benchmark only: the env without its per-episode release, to measure what the release saves
        env_module.release_memory = lambda: False
    net, env = build_env(model_name, target=target)[2:]
    rng = np.random.default_rng(seed)
    samples = [(0, rss_bytes())]
    print(f"{model_name}, {episodes} random-policy episodes, per-episode release {'on' if release else 'off'}, "
          f"{threads} thread(s); RSS before the first episode {samples[0][1] / 2**20:.0f} MiB", flush=True)
    start = time.perf_counter()
    for episode in range(1, episodes + 1):
        env.reset(seed=seed)
        for _ in range(net.num_groups):
            env.step(np.array([rng.uniform(-1.0, 1.0)], dtype=np.float32))
        if episode % every == 0 or episode == episodes:
            samples.append((episode, rss_bytes()))
            print(f"episode {episode:4d}  RSS {samples[-1][1] / 2**20:7.1f} MiB  "
                  f"({(time.perf_counter() - start) / episode:.2f} s / episode)", flush=True)
    return samples


def rss_drift(samples: list[tuple[int, int]], since: int = 20) -> tuple[int, float] | None:
    """RSS at episode ``since`` and the largest relative deviation from it at later samples (None: not sampled)."""
    ref = dict(samples).get(since)
    if ref is None:
        return None
    later = [rss for episode, rss in samples if episode > since]
    return ref, max((abs(rss - ref) / ref for rss in later), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--target", type=float, default=0.5, help="MACs budget (fraction of the original)")
    parser.add_argument("--episodes", type=int, default=10, help="warm-up episodes, then as many learning episodes")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rss-episodes", type=int, default=0, metavar="N",
                        help="instead: resident memory over N random-policy episodes of the first model")
    parser.add_argument("--no-release", action="store_true", help="with --rss-episodes: skip the per-episode release")
    parser.add_argument("--levers", action="store_true",
                        help="instead: seconds per episode with each speed lever off and on (early stop, n_envs=2)")
    parser.add_argument("--eval-knobs", action="store_true",
                        help="instead: evaluation batch size and memory format of a pruned, BN-folded copy")
    parser.add_argument("--bn-recal", action="store_true",
                        help="instead: BN recalibration (20 batches) of a pruned copy in NCHW vs channels-last")
    args = parser.parse_args(argv)
    if args.bn_recal:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.threads} thread(s)")
        print("| model | batches | NCHW (s) | channels-last (s) | speed-up | max relative BN var difference | "
              "reward-val accuracy difference |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in args.models:
            r = bn_recal_rows(name, target=args.target, threads=args.threads)
            print(f"| {r['model']} | {r['batches']} | {r['nchw_s']:.2f} | {r['channels_last_s']:.2f} | "
                  f"{r['speed_up']:.2f}x | {r['max_rel_var_diff']:.1e} | {100 * r['accuracy_diff']:.2f} points |",
                  flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    if args.eval_knobs:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.threads} thread(s)")
        print("| model | eval batch | memory format | s / 2000 images | speed-up vs 500, contiguous | accuracy |")
        print("|---|---:|---|---:|---:|---:|")
        for name in args.models:
            for r in eval_knob_rows(name, target=args.target, threads=args.threads):
                print(f"| {r['model']} | {r['batch']} | {r['format']} | {r['s']:.2f} | {r['speed_up']:.2f}x | "
                      f"{100 * r['accuracy']:.2f}% |", flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    if args.levers:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.threads} thread(s)")
        print("| model | lever | s / episode | ratio to a reward-val pass | speed-up vs plain | note |")
        print("|---|---|---:|---:|---:|---|")
        for name in args.models:
            for r in lever_rows(name, target=args.target, episodes=args.episodes, threads=args.threads):
                print(f"| {r['model']} | {r['lever']} | {r['episode_s']:.2f} | {r['ratio_to_pass']:.3f} | "
                      f"{r['speed_up']:.2f}x | {r['note']} |", flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    if args.rss_episodes > 0:
        samples = rss_run(args.models[0], target=args.target, episodes=args.rss_episodes, threads=args.threads,
                          release=not args.no_release)
        drift = rss_drift(samples)
        peak = max(rss for _, rss in samples)
        if drift is None:
            print(f"peak RSS {peak / 2**20:.0f} MiB (fewer than 20 episodes: no drift figure)")
        else:
            ref, dev = drift
            print(f"RSS at episode 20: {ref / 2**20:.0f} MiB; largest deviation after it: {100 * dev:.1f}% "
                  f"({'flat within 10%' if dev <= 0.10 else 'NOT flat within 10%'}); peak {peak / 2**20:.0f} MiB")
        return 0
    print("| model | groups | s / warm-up episode | s / learning episode | s / reward-val pass (5000 images) | "
          "ratio warm-up | ratio learning |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        r = bench_one(name, target=args.target, episodes=args.episodes, threads=args.threads)
        print(f"| {r['model']} | {r['groups']} | {r['warmup_episode_s']:.2f} | {r['learning_episode_s']:.2f} | "
              f"{r['reward_val_pass_s']:.2f} | {r['warmup_ratio']:.3f} | {r['learning_ratio']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
