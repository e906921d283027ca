"""MACs / params against hand counts and torch's FlopCounterMode; latency, latency tables, memory."""

from __future__ import annotations

import gc
import json
import math
import mmap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import amc.measure.latency as latency_module
import amc.measure.memory as memory_module
from amc.measure.latency import (
    LatencyStats,
    machine_conditions,
    measure_latencies,
    measure_latency,
    measure_model_latencies,
)
from amc.measure.latency_table import LatencyTable, LatencyTableError
from amc.measure.macs import count_macs_params, layer_costs
from amc.measure.memory import release_memory, rss_bytes
from amc.models import build_model
from amc.pruning.groups import PrunableNetwork


def hand_net() -> nn.Sequential:
    """conv 3->8 k3 s1 p1, depthwise 8 k3, conv 8->16 k3 s2, linear 256->10; input (3, 8, 8)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
        nn.Conv2d(8, 16, 3, 2, 1, bias=False),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


HAND_MACS = {
    "0": 8 * 8 * 8 * 3 * 9,  # out positions x out channels x in channels x kernel
    "3": 8 * 8 * 8 * 1 * 9,  # depthwise: one input channel per output channel
    "4": 4 * 4 * 16 * 8 * 9,  # stride 2 halves the output side
    "6": 256 * 10,
}


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def test_layer_costs_match_hand_counts() -> None:
    model = hand_net().train()
    costs = layer_costs(model, (1, 3, 8, 8))
    assert list(costs) == ["0", "3", "4", "6"]  # call order
    assert {name: c.macs for name, c in costs.items()} == HAND_MACS
    dw, s2, fc = costs["3"], costs["4"], costs["6"]
    assert (dw.groups, dw.in_channels, dw.out_channels, dw.params) == (8, 8, 8, 8 * 9)
    assert (s2.stride, s2.kernel, s2.in_hw, s2.out_hw) == (2, 3, (8, 8), (4, 4))
    assert (fc.in_channels, fc.out_channels, fc.params) == (256, 10, 256 * 10 + 10)
    assert costs["0"].params == 3 * 8 * 9 + 8
    assert model.training  # mode restored


def test_count_macs_params_totals() -> None:
    model = hand_net()
    macs, params = count_macs_params(model, (1, 3, 8, 8))
    assert macs == sum(HAND_MACS.values()) == 39424
    assert params == sum(p.numel() for p in model.parameters()) == (3 * 8 * 9 + 8) + 16 + 72 + 16 * 8 * 9 + 2570
    # MACs are per image: the batch dimension of input_shape only sets the traced batch
    assert count_macs_params(model, (3, 3, 8, 8))[0] == macs


def test_linear_on_token_inputs_counts_every_position() -> None:
    model = nn.Linear(6, 4)
    assert layer_costs(model, (2, 5, 6))[""].macs == 5 * 6 * 4


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_macs_agree_with_torch_flop_counter(name: str) -> None:
    model = build_model(name, in_channels=1, num_classes=10).eval()
    macs, params = count_macs_params(model, (1, 1, 28, 28))
    assert params == sum(p.numel() for p in model.parameters())
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate of every conv / matmul and ignores biases,
    # BatchNorm, activations, residual additions and pooling, exactly like our conv + linear MAC count.
    assert _flops(model, torch.zeros(1, 1, 28, 28)) == 2 * macs
    # it counts the whole batch, our MACs are per image
    assert _flops(model, torch.zeros(3, 1, 28, 28)) == 2 * 3 * macs


def test_hand_net_agrees_with_torch_flop_counter() -> None:
    model = hand_net().eval()
    assert _flops(model, torch.zeros(1, 3, 8, 8)) == 2 * count_macs_params(model, (1, 3, 8, 8))[0]


def test_latency_positive_and_restores_mode() -> None:
    model = hand_net().train()
    seconds = measure_latency(model, (1, 3, 8, 8), warmup=1, repeats=3)
    assert isinstance(seconds, float) and 0 < seconds < 10
    assert model.training
    model.eval()
    measure_latency(model, (2, 3, 8, 8), warmup=0, repeats=1)
    assert not model.training


def test_latency_is_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 20.5])  # pass durations 1, 3, 0.5 -> median 1
    monkeypatch.setattr(latency_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    assert measure_latency(hand_net(), (1, 3, 8, 8), warmup=0, repeats=3) == 1.0


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": -1}, {"warmup": -1}])
def test_latency_rejects_bad_counts(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        measure_latency(hand_net(), (1, 3, 8, 8), **kwargs)


# -- interleaved latency measurement ----------------------------------------------------------------------------
class FakeClock:
    """A clock that only moves when a callable says how long it took: timings without timing flakiness."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        self.now += seconds


def test_latencies_are_measured_round_robin_after_warmup() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    stats = measure_latencies(fns, warmup=1, repeats=4)
    # each round runs every callable once, the order rotated by one per round (warm-up round first)
    assert calls == list("abc" "bca" "cab" "abc" "bca")
    assert list(stats) == ["a", "b", "c"] and all(s.repeats == 4 for s in stats.values())


def test_median_quartiles_and_noisy_flag_with_a_fake_clock() -> None:
    clock = FakeClock()
    jitter = iter([1.0, 9.0, 1.0, 1.0, 2.0, 9.0, 1.0, 5.0] * 2)  # ms; sleeps injected at random-looking rounds
    fns = {"steady": lambda: clock.work(2e-3), "jittery": lambda: clock.work(next(jitter) * 1e-3)}
    stats = measure_latencies(fns, warmup=0, repeats=16, timer=clock)
    steady, jittery = stats["steady"], stats["jittery"]
    assert steady.median_ms == pytest.approx(2.0) and steady.spread == pytest.approx(0.0, abs=1e-9)
    assert not steady.noisy
    assert jittery.median_ms == pytest.approx(1.5)  # the median ignores the slow outliers
    assert (jittery.p25_ms, jittery.p75_ms) == (pytest.approx(1.0), pytest.approx(6.0))
    assert jittery.spread == pytest.approx(5.0 / 1.5) and jittery.noisy
    assert jittery.iqr_ms == pytest.approx(5.0) and "noisy" in str(jittery) and "noisy" not in str(steady)
    assert LatencyStats.from_samples([1.0, 1.1, 1.2, 1.3], noisy_spread=0.5).noisy is False  # threshold honoured
    assert LatencyStats.from_samples([1.0, 1.1, 1.2, 1.3], noisy_spread=0.05).noisy is True


def test_latencies_fix_threads_pause_gc_and_restore_them() -> None:
    seen: list[tuple[int, bool]] = []
    before = torch.get_num_threads()
    measure_latencies({"f": lambda: seen.append((torch.get_num_threads(), gc.isenabled()))},
                      warmup=1, repeats=2, threads=before + 1)
    assert seen == [(before + 1, False)] * 3
    assert torch.get_num_threads() == before and gc.isenabled()

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_latencies({"f": boom}, threads=before + 1)
    assert torch.get_num_threads() == before and gc.isenabled()  # restored after a failure too


@pytest.mark.parametrize(("fns", "kwargs", "match"), [
    ({}, {}, "empty"),
    ({"f": lambda: None}, {"repeats": 0}, "repeats"),
    ({"f": lambda: None}, {"warmup": -1}, "warmup"),
    ({"f": lambda: None}, {"threads": 0}, "threads"),
    ({"f": 3}, {}, "'f' is a int"),
])
def test_latencies_reject_bad_arguments(fns: dict, kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        measure_latencies(fns, **kwargs)


def test_model_latencies_restore_modes_and_keep_models_in_place() -> None:
    clock = FakeClock()
    a, b = hand_net().train(), hand_net().eval()
    seen_training: list[bool] = []
    a.register_forward_hook(lambda m, i, o: (seen_training.append(m.training), clock.work(1e-3)))
    b.register_forward_hook(lambda m, i, o: clock.work(3e-3))
    stats = measure_model_latencies({"a": a, "b": b}, (1, 3, 8, 8), warmup=1, repeats=3, timer=clock)
    assert (stats["a"].median_ms, stats["b"].median_ms) == (pytest.approx(1.0), pytest.approx(3.0))
    assert seen_training == [False] * 4  # eval mode while timed
    assert a.training and not b.training  # modes restored
    assert next(a.parameters()).device.type == "cpu"
    stats = measure_model_latencies({"a": a, "b": b}, {"a": (1, 3, 8, 8), "b": (2, 3, 8, 8)}, warmup=0, repeats=1)
    assert set(stats) == {"a", "b"}
    with pytest.raises(ValueError, match="'meta' .* move it first|on meta"):
        measure_model_latencies({"m": hand_net().to("meta")}, (1, 3, 8, 8))


def test_machine_conditions_record_load_threads_and_time() -> None:
    conditions = machine_conditions("cpu")
    assert conditions["torch_threads"] == torch.get_num_threads()
    assert conditions["torch_version"] == torch.__version__ and conditions["device"] == "cpu"
    assert conditions["cpu_count"] >= 1 and conditions["timestamp"]
    if hasattr(__import__("os"), "getloadavg"):
        assert len(conditions["loadavg_1_5_15"]) == 3
    json.dumps(conditions)  # recordable as is


# -- latency table: careful measurement, save / load ------------------------------------------------------------
def _tiny(width: int = 4, side: int = 8) -> PrunableNetwork:
    """conv 3->width, conv width->width stride 2, pooled linear width->10: runs on any input side."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                          nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(width, 10))
    return PrunableNetwork(model.eval(), (1, 3, side, side))


@pytest.fixture(scope="module")
def tiny_table() -> tuple[PrunableNetwork, LatencyTable]:
    net = _tiny()
    return net, LatencyTable.measure(net, max_points=2, warmup=1, repeats=3, threads=1)


def test_latency_table_records_conditions_and_spread(tiny_table: tuple[PrunableNetwork, LatencyTable]) -> None:
    net, table = tiny_table
    m = table.to_dict()["measurement"]
    assert m["threads"] == 1 and m["repeats"] == 3 and m["warmup"] == 1
    assert m["conditions"]["torch_version"] == torch.__version__
    assert m["full_model"]["repeats"] == 3 and m["full_model"]["median_ms"] > 0
    assert 0 <= m["layer_spread_median"] <= m["layer_spread_max"]
    assert m["timings"] >= len(net.costs) + 1  # every distinct layer configuration and the full model
    assert isinstance(table.noisy, bool)
    assert table.full_latency == pytest.approx(m["full_model"]["median_ms"] / 1e3)


def test_latency_table_save_load_round_trip(tiny_table: tuple[PrunableNetwork, LatencyTable], tmp_path: Path) -> None:
    net, table = tiny_table
    path = table.save(tmp_path / "latency_table.json")
    loaded = LatencyTable.load(path, net, device="cpu", batch_size=1)
    for counts in ([g.channels for g in net.groups], [1] * net.num_groups, [max(1, g.channels // 2) for g in net.groups]):
        assert loaded.predict(counts) == table.predict(counts)
    assert loaded.to_dict() == json.loads(json.dumps(table.to_dict()))
    assert loaded.measurement["conditions"] == table.measurement["conditions"]
    with pytest.raises(FileExistsError, match="never overwritten"):
        table.save(path)
    assert json.loads(path.read_text()) == loaded.to_dict()


def test_latency_table_load_refuses_a_table_of_another_network(
    tiny_table: tuple[PrunableNetwork, LatencyTable], tmp_path: Path
) -> None:
    net, table = tiny_table
    path = table.save(tmp_path / "t.json")
    with pytest.raises(LatencyTableError, match=r"t\.json.*\(3, 4\) channels but the network has \(3, 8\).*does not match"):
        LatencyTable.load(path, _tiny(width=8))  # same layers, other channel counts
    with pytest.raises(LatencyTableError, match=r"t\.json.*inputs \[3, 8, 8\].*\[3, 16, 16\]"):
        LatencyTable.load(path, _tiny(side=16))  # same channels, other input size
    with pytest.raises(LatencyTableError, match="missing layers"):
        LatencyTable.load(path, PrunableNetwork(hand_net().eval(), (1, 3, 8, 8)))
    with pytest.raises(LatencyTableError, match="measured on cpu, not on cuda"):
        LatencyTable.load(path, net, device="cuda")
    with pytest.raises(LatencyTableError, match="batch size 1, not 4"):
        LatencyTable.load(path, net, batch_size=4)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("layers"), "malformed"),
    (lambda d: next(iter(d["layers"].values()))["seconds"][0].append(1.0), "grid"),
    (lambda d: next(iter(d["layers"].values()))["seconds"][0].__setitem__(0, math.inf), "finite"),
    (lambda d: next(iter(d["layers"].values())).update(out=[4, 2]), "increasing"),
])
def test_latency_table_load_refuses_a_malformed_file(
    tiny_table: tuple[PrunableNetwork, LatencyTable], tmp_path: Path, edit, match: str
) -> None:
    net, table = tiny_table
    data = json.loads(json.dumps(table.to_dict()))
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match=match):
        LatencyTable.load(path, net)


def test_latency_table_load_names_an_unreadable_file(tiny_table: tuple[PrunableNetwork, LatencyTable],
                                                     tmp_path: Path) -> None:
    net, _ = tiny_table
    with pytest.raises(FileNotFoundError, match="nope.json"):
        LatencyTable.load(tmp_path / "nope.json", net)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(LatencyTableError, match=r"bin\.json is not UTF-8 JSON"):
        LatencyTable.load(tmp_path / "bin.json", net)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(LatencyTableError, match="JSON object"):
        LatencyTable.load(tmp_path / "list.json", net)


# -- memory -----------------------------------------------------------------------------------------------------
def test_rss_bytes_sees_a_large_allocation() -> None:
    # fresh pages straight from the OS: a malloc'd block could reuse pages already resident in a long test session
    size = 16 * 2**20
    block = mmap.mmap(-1, size)
    before = rss_bytes()
    block.write(b"\x01" * size)  # touch every page
    assert rss_bytes() - before > 8 * 2**20
    assert block[size - 1] == 1
    block.close()


@pytest.mark.skipif(memory_module._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_release_memory_returns_freed_heap_blocks_to_the_os() -> None:
    blocks = [torch.ones(1024) for _ in range(20_000)]  # ~80 MiB of small heap blocks (below the mmap threshold)
    last = blocks[-1]  # pinned at the top of the heap: the freed blocks below cannot be returned by free() alone
    del blocks
    before = rss_bytes()
    assert release_memory() is True
    assert before - rss_bytes() > 40 * 2**20
    assert float(last[0]) == 1.0


def test_release_memory_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("no libc here")

    monkeypatch.setattr(memory_module, "_malloc_trim", broken)
    assert release_memory() is False
    monkeypatch.setattr(memory_module, "_malloc_trim", lambda: None)
    assert release_memory() is False
