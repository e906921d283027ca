"""Benchmark of the search: seconds per episode, and its ratio to one accuracy pass over reward-val, in one run.

    python experiments/benchmark_search.py                          # ResNet-20 and ResNet-56, 50% MACs
    python experiments/benchmark_search.py --models resnet56 --episodes 10

Per model: the env and DDPG agent of ``python -m amc.search`` (AMC settings, 2000 reward-val images per episode,
selection + reconstruction), ``--episodes`` warm-up episodes (random actions) then ``--episodes`` learning episodes
(one gradient step per transition), timed separately, with reward-val passes of the original model (all 5000 images)
measured in the same process before and after. Uses the committed Fashion-MNIST baselines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

BASELINES = Path("experiments/baselines/fashion_mnist")


def bench_one(model_name: str, *, target: float, episodes: int, threads: int) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    from amc.agents import make_agent
    from amc.checkpoint import load_checkpoint
    from amc.data import fashion_mnist
    from amc.envs import ChannelPruningEnv
    from amc.measure.accuracy import evaluate_accuracy
    from amc.pruning.budget import ResourceBudget
    from amc.pruning.engine import PruningEngine
    from amc.pruning.groups import PrunableNetwork
    from amc.pruning.reconstruction import Reconstructor

    class EpisodeTimes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def _on_step(self) -> bool:
            if self.locals["dones"][0]:
                self.ends.append(time.perf_counter())
            return True

    torch.set_num_threads(threads)
    data = fashion_mnist()
    ckpt = BASELINES / model_name / "model.safetensors"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: run from the repository root (the committed baselines)")
    model = load_checkpoint(ckpt)[0]
    net = PrunableNetwork(model, (1, 1, 28, 28))
    engine = PruningEngine(net, reconstructor=Reconstructor.calibrate(net, data))
    env = ChannelPruningEnv(net, engine, data, budget=ResourceBudget(net, "macs", target, 0.2), eval_images=2000)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--target", type=float, default=0.5, help="MACs budget (fraction of the original)")
    parser.add_argument("--episodes", type=int, default=10, help="warm-up episodes, then as many learning episodes")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
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
