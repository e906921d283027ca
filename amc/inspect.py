"""``python -m amc.inspect checkpoint=...``: the channel groups of a model, which are prunable and which are frozen.

The same check runs at the set-up of every search, prune and apply; this command runs it alone and prints the
groups (root layer, channels, coupled layers, share of the MACs) and the frozen ones with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from amc.artifacts.checkpoint import CheckpointError
from amc.cli import (
    build_data,
    load_checkpoint_for,
    model_allow,
    resolve_device,
    resolve_runtime_settings,
    user_errors,
    user_model_spec,
)
from amc.pruning.groups import PrunableNetwork


def describe(net: PrunableNetwork, name: str) -> dict[str, Any]:
    """Plain data about ``net``'s prunable and frozen groups."""
    return {
        "model": name, "macs": net.original_macs, "params": net.original_params, "round_to": net.round_to,
        "prunable_macs_share": net.prunable_macs_share,
        "groups": [{"index": g.index, "root": g.root, "channels": g.channels, "channel_groups": g.channel_groups,
                    "layers": list(dict.fromkeys((*g.producers, *g.consumers))),
                    "macs_share": g.macs / net.original_macs} for g in net.groups],
        "frozen": [{"root": f.root, "channels": f.channels, "layers": list(f.layers), "reason": f.reason}
                   for f in net.frozen],
    }


def _layers(layers: list[str], limit: int = 4) -> str:
    return ", ".join(layers[:limit]) + (f" (+{len(layers) - limit})" if len(layers) > limit else "")


def _per_group(group: dict[str, Any]) -> str:
    groups = group.get("channel_groups", 1)
    return f" ({groups} conv groups)" if groups > 1 else ""


def format_inspection(info: dict[str, Any]) -> str:
    """The report ``amc.inspect`` prints."""
    lines = [f"{info['model']}: {len(info['groups'])} prunable group(s), {len(info['frozen'])} frozen; "
             f"{info['macs'] / 1e6:.2f} M MACs, {info['params'] / 1e6:.3f} M params; channel counts on a grid of "
             f"{info.get('round_to', 1)} (round_to)",
             f"prunable: pruning can remove up to {100 * info['prunable_macs_share']:.1f}% of the MACs (every "
             f"prunable group at its smallest count)", "",
             "| # | root layer | channels | MACs of its layers | coupled layers |", "|---:|---|---:|---:|---|"]
    lines += [f"| {g['index']} | {g['root']} | {g['channels']}{_per_group(g)} | {100 * g['macs_share']:.1f}% | "
              f"{_layers(g['layers'])} |" for g in info["groups"]]
    if info["frozen"]:
        lines += ["", "Frozen (kept whole):", "", "| root layer | channels | coupled layers | reason |", "|---|---:|---|---|"]
        lines += [f"| {f['root']} | {f['channels']} | {_layers(f['layers'])} | {f['reason']} |" for f in info["frozen"]]
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Load the model (our checkpoint or a plain state dict with ``model._target_``) and check its groups."""
    if not Path(str(cfg.checkpoint)).is_file():
        raise CheckpointError(f"checkpoint {cfg.checkpoint} not found")
    device = resolve_device(cfg.device)
    resolve_runtime_settings(cfg, "round_to")
    data = build_data(cfg.data)
    model, spec = load_checkpoint_for(cfg.checkpoint, data, device, allow=model_allow(cfg),
                                      model_spec=user_model_spec(cfg, data))
    net = PrunableNetwork(model, (1, data.in_channels, *data.image_size), exclude=list(cfg.exclude),
                          round_to=cfg.round_to, graph_time_limit=cfg.graph_time_limit)
    return describe(net, f"{spec['target']} ({cfg.checkpoint})")


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="inspect")
def main(cfg: DictConfig) -> None:
    with user_errors("amc-inspect"):
        print(format_inspection(run(cfg)))


if __name__ == "__main__":
    main()
