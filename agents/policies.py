"""SB3 policies whose actor learns at a fixed fraction of the critic's learning rate (AMC: 1e-4 vs 1e-3).

SB3 has one learning-rate schedule and, at every ``train()`` call, writes its value into every optimizer's param
groups (``_update_learning_rate``). So the model's ``learning_rate`` is the critic's, and the actor's optimizer
multiplies it by ``actor_lr_scale = actor_lr / critic_lr`` inside ``step()``. The overridden hooks ``_build`` and
``_get_constructor_parameters`` are SB3 internals: ``amc.compat.SB3_POLICY_HOOKS``, checked by tests/test_compat.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy


class ScaledLRAdam(th.optim.Adam):
    """Adam that steps with ``group["lr"] * group["lr_scale"]`` and leaves ``group["lr"]`` for SB3's schedule."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, lr_scale: float = 1.0, **kwargs: Any) -> None:
        if lr_scale <= 0:
            raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
        super().__init__(params, lr=lr, **kwargs)
        self.defaults["lr_scale"] = float(lr_scale)  # param groups added later inherit it
        for group in self.param_groups:
            group.setdefault("lr_scale", float(lr_scale))

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        scheduled = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group["lr_scale"]
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, scheduled):
                group["lr"] = lr


def _scaled_actor_optimizer(policy: TD3Policy | SACPolicy, lr_schedule: Schedule, scale: float) -> ScaledLRAdam:
    if policy.optimizer_class is not th.optim.Adam:
        raise ValueError(f"AMC policies use Adam (actor at a scaled lr); got optimizer_class={policy.optimizer_class}")
    return ScaledLRAdam(policy.actor.parameters(), lr=lr_schedule(1), lr_scale=scale, **policy.optimizer_kwargs)


class _ScaledActorLR:
    """Mixin for SB3 actor-critic policies: rebuild the actor's optimizer at ``actor_lr_scale`` x the lr."""

    actor: Any

    def __init__(self, *args: Any, actor_lr_scale: float = 1.0, **kwargs: Any) -> None:
        self.actor_lr_scale = float(actor_lr_scale)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self.actor.optimizer = _scaled_actor_optimizer(self, lr_schedule, self.actor_lr_scale)  # type: ignore[arg-type]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "actor_lr_scale": self.actor_lr_scale}  # type: ignore[misc]


class AMCTD3Policy(_ScaledActorLR, TD3Policy):
    """TD3Policy (also DDPG's) whose actor's Adam runs at ``actor_lr_scale`` x the scheduled (critic) lr."""


class AMCSACPolicy(_ScaledActorLR, SACPolicy):
    """SACPolicy whose actor's Adam runs at ``actor_lr_scale`` x the scheduled (critic) lr."""
