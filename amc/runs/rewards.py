"""Episode rewards: pure functions of (accuracy in [0, 1], MACs, params).

``accuracy`` is the reference code's reward (it used acc * 0.01 on percentages); ``neg_error`` is the paper's
R_err = -Error for the resource-constrained protocol; the ``neg_error_log_*`` rewards are the paper's
accuracy-guaranteed rewards R_FLOPs = -Error * log(FLOPs) and R_Param = -Error * log(#Params).
"""

from __future__ import annotations

import math
from collections.abc import Callable

RewardFn = Callable[[float, float, float], float]


def accuracy(acc: float, macs: float, params: float) -> float:
    """The accuracy itself (AMC reference code)."""
    return float(acc)


def neg_error(acc: float, macs: float, params: float) -> float:
    """R_err = -(1 - acc) (AMC paper, resource-constrained)."""
    return -(1.0 - float(acc))


def neg_error_log_macs(acc: float, macs: float, params: float) -> float:
    """R_FLOPs = -(1 - acc) * log(MACs) (AMC paper, accuracy-guaranteed)."""
    return -(1.0 - float(acc)) * math.log(macs)


def neg_error_log_params(acc: float, macs: float, params: float) -> float:
    """R_Param = -(1 - acc) * log(params) (AMC paper, accuracy-guaranteed)."""
    return -(1.0 - float(acc)) * math.log(params)


REWARDS: dict[str, RewardFn] = {
    "accuracy": accuracy,
    "neg_error": neg_error,
    "neg_error_log_macs": neg_error_log_macs,
    "neg_error_log_params": neg_error_log_params,
}


def get_reward(name: str) -> RewardFn:
    """The reward function called ``name``."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; expected one of {sorted(REWARDS)}")
    return REWARDS[name]
