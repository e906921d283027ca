"""The runtime a pruned model is deployed with, and forward passes timed in it.

``onnxruntime`` (CPU execution provider, the runtime people deploy CNNs with on CPU) or ``torch`` (eager PyTorch).
A model is exported with torch's TorchScript ONNX exporter and run in a session with fixed, recorded options (intra-op
threads, one inter-op thread, sequential execution, no spin-waiting, graph optimisation level ``all``, which includes
the NCHWc layout pass of onnxruntime's CPU kernels). Those kernels block channels by 8 (16 with AVX-512F): a channel
count off that grid leaves a convolution on the slow plain-NCHW path, so ``default_round_to`` gives the grid that
pruned channel counts should land on.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import platform
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.measure.latency import LatencyStats, measure_latencies

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "torch")
RUNTIME_CHOICES = (*RUNTIMES, "auto")
INSTALL_HINT = "pip install -e '.[export]' (or pip install onnx onnxruntime)"
OPSET = 17  # TorchScript exporter range is 7..20; 17 runs on onnxruntime >= 1.11 and most other runtimes
MAX_OPSET = 20
INPUT_NAME, OUTPUT_NAME = "input", "logits"
GRAPH_OPTIMIZATION = "all"  # onnxruntime's ORT_ENABLE_ALL: constant folding, fusions and the NCHWc layout pass


class RuntimeUnavailable(ValueError):
    """The requested runtime is not installed, or a model cannot run in it."""


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def require_onnx() -> tuple[ModuleType, ModuleType]:
    """Import onnx and onnxruntime, or say how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise RuntimeUnavailable(f"runtime onnxruntime needs onnx and onnxruntime ({e}); install them with "
                                 f"{INSTALL_HINT}, or measure eager PyTorch with runtime=torch") from e
    return onnx, onnxruntime


def resolve_runtime(name: str) -> str:
    """``onnxruntime`` or ``torch``; ``auto`` is onnxruntime when installed, else torch (with a warning)."""
    if name not in RUNTIME_CHOICES:
        raise ValueError(f"unknown runtime {name!r}; expected one of {list(RUNTIME_CHOICES)}")
    if name == "auto":
        if onnxruntime_available():
            return "onnxruntime"
        log.warning("runtime=auto: onnxruntime is not installed, so latencies are eager PyTorch's (install it with %s)",
                    INSTALL_HINT)
        return "torch"
    if name == "onnxruntime":
        require_onnx()
    return name


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (for the conditions recorded with a latency)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_round_to(runtime: str, flags: frozenset[str] | None = None) -> int:
    """The channel grid of ``runtime`` on this CPU: onnxruntime's NCHWc block (16 with AVX-512F, else 8; 1 on a CPU
    without AVX2, whose kernels do not block channels); 1 for eager PyTorch."""
    if runtime == "torch":
        return 1
    if runtime != "onnxruntime":
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}")
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        return 16
    return 8 if "avx2" in flags or not flags else 1  # no flags known (not Linux): assume an AVX2-class CPU


def resolve_round_to(round_to: int | str, runtime: str) -> int:
    """``round_to`` as an int: ``auto`` is the grid of ``runtime`` (``resolve_runtime`` first) on this CPU."""
    if round_to == "auto":
        return default_round_to(resolve_runtime(runtime))
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1 or 'auto' (the runtime's channel grid), got {round_to!r}")
    return round_to


def comparison_runtimes(runtime: str, *, eager: bool) -> list[str]:
    """The runtimes a comparison is timed in: ``runtime`` first, eager PyTorch beside onnxruntime when ``eager``."""
    return [runtime, *(["torch"] if eager and runtime != "torch" else [])]


def resolve_threads(threads: int | None) -> int:
    """A latency measurement's intra-op threads: ``threads``, or torch's current count when None."""
    return int(threads) if threads is not None else torch.get_num_threads()


def runtime_conditions(runtime: str, threads: int) -> dict[str, Any]:
    """What a latency in ``runtime`` depends on besides the load: versions, options, CPU and its grid."""
    record: dict[str, Any] = {"runtime": runtime, "threads": threads, "cpu": cpu_name(),
                              "cpu_grid": default_round_to("onnxruntime"), "torch_version": torch.__version__}
    if runtime == "onnxruntime":
        _, ort = require_onnx()
        record.update(onnxruntime_version=ort.__version__, graph_optimization=GRAPH_OPTIMIZATION, inter_op_threads=1,
                      execution_mode="sequential", allow_spinning=False, provider="CPUExecutionProvider")
    return record


def export_onnx(model: nn.Module, input_shape: Sequence[int], *, opset: int = OPSET) -> bytes:
    """The serialized ONNX model of ``model`` in eval mode, batch axis dynamic (named ``batch``).

    A model the exporter cannot convert raises RuntimeUnavailable with the exporter's message (which names the
    operator) and the way out (runtime=torch)."""
    if not 7 <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset} is not supported by the TorchScript exporter; choose one in [7, {MAX_OPSET}]")
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    param = next(model.parameters(), None)
    dummy = torch.zeros(2, *input_shape[1:], device=param.device if param is not None else "cpu")  # batch 2: nothing specialised to 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated (see amc.export)
            torch.onnx.export(model, (dummy,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, dynamo=False)
    except Exception as e:  # the exporter raises many types; its message names the operator, we find the layer
        layer = _failing_layer(model, dummy, opset)
        where = f" (layer {layer!r})" if layer else ""
        raise RuntimeUnavailable(f"{type(model).__name__} cannot be exported to ONNX{where}: {type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}; measure it in eager "
                                 f"PyTorch with runtime=torch") from e
    finally:
        model.train(was_training)
    return buffer.getvalue()


def _failing_layer(model: nn.Module, x: torch.Tensor, opset: int) -> str | None:
    """The deepest submodule that does not export on its own (with the input it gets in ``model``), or None."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _, args, name=name: inputs.setdefault(name, args[0])
                                         if len(args) == 1 and isinstance(args[0], torch.Tensor) else None)
             for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # the model does not even run: nothing to localise
        return None
    finally:
        for h in hooks:
            h.remove()
    modules = dict(model.named_modules())
    for name in sorted(inputs, key=lambda n: -n.count(".")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(modules[name], (inputs[name],), io.BytesIO(), opset_version=opset, dynamo=False)
        except Exception:
            return name
    return None


def onnx_session(model_bytes: bytes, *, threads: int) -> Any:
    """A CPU onnxruntime session with ``threads`` intra-op threads, all graph optimisations, no spin-waiting (it would
    steal the CPU from the calls timed next to it in an interleaved block)."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def forward_callable(model: nn.Module, input_shape: Sequence[int], *, runtime: str, threads: int,
                     onnx_bytes: bytes | None = None) -> Callable[[], object]:
    """A zero-argument forward pass of ``model`` on a fixed random batch of ``input_shape`` in ``runtime`` (for
    ``measure_latencies``). Eager models run in eval mode; the caller wraps the block in ``torch.no_grad()``."""
    if runtime == "torch":
        param = next(model.parameters(), None)
        x = torch.randn(tuple(input_shape), device=param.device if param is not None else "cpu")
        model.eval()
        return functools.partial(model, x)
    if runtime != "onnxruntime":
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}")
    session = onnx_session(onnx_bytes if onnx_bytes is not None else export_onnx(model, input_shape), threads=threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(np.float32)}
    return functools.partial(session.run, None, feed)


def measure_runtime_latencies(
    models: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    *,
    runtimes: Sequence[str],
    batch_sizes: Sequence[int] = (1,),
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    warm_calls: int = 1,
) -> dict[str, dict[str, dict[int, LatencyStats]]]:
    """Latency of every model in every runtime at every batch size, all in ONE interleaved block (CPU), each timed
    call right after ``warm_calls`` untimed ones of the same model (warm caches, as deployed).

    Returns ``stats[name][runtime][batch_size]``. Each model is exported to ONNX once (batch axis dynamic)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    fns: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        onnx_bytes = export_onnx(model, input_shape) if "onnxruntime" in runtimes else None
        for runtime in runtimes:
            for size in batch_sizes:
                shape = (int(size), *input_shape[1:])
                fns[f"{name}\0{runtime}\0{size}"] = forward_callable(model, shape, runtime=runtime, threads=threads,
                                                                     onnx_bytes=onnx_bytes)
    on_cuda = any(p.is_cuda for m in models.values() for p in m.parameters())
    sync = torch.cuda.synchronize if on_cuda and "torch" in runtimes else None
    with torch.no_grad():
        stats = measure_latencies(fns, warmup=warmup, repeats=repeats, threads=threads, sync=sync,
                                  warm_calls=warm_calls)
    out: dict[str, dict[str, dict[int, LatencyStats]]] = {}
    for key, s in stats.items():
        name, runtime, size = key.split("\0")
        out.setdefault(name, {}).setdefault(runtime, {})[int(size)] = s
    return out


def layer_onnx(layer: nn.Module, input_shape: Sequence[int]) -> bytes:
    """A one-node ONNX model of a standalone Conv2d or Linear layer (built directly: the exporter takes ~50x longer,
    and a latency table times hundreds of layers)."""
    require_onnx()
    from onnx import helper, numpy_helper

    weight = layer.weight.detach().cpu().numpy().astype(np.float32)
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy().astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W")] + ([numpy_helper.from_array(bias, "B")] if bias is not None else [])
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise RuntimeUnavailable(f"cannot time {layer} standalone in onnxruntime (padding {layer.padding!r}, "
                                     f"mode {layer.padding_mode}); use runtime=torch")
        ph, pw = layer.padding
        node = helper.make_node("Conv", ["x", "W"] + (["B"] if bias is not None else []), ["y"],
                                kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                                pads=[ph, pw, ph, pw], dilations=list(layer.dilation), group=layer.groups)
        nodes = [node]
    elif isinstance(layer, nn.Linear):
        inits[0] = numpy_helper.from_array(np.ascontiguousarray(weight.T), "W")
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y" if bias is None else "xw"])]
        if bias is not None:
            nodes.append(helper.make_node("Add", ["xw", "B"], ["y"]))
    else:
        raise RuntimeUnavailable(f"cannot time a standalone {type(layer).__name__} in onnxruntime; use runtime=torch")
    return _one_input_model(nodes, input_shape, inits)


def latency_key(runtime: str, batch_size: int) -> str:
    """How a latency column is named: ``onnxruntime b1``."""
    return f"{runtime} b{batch_size}"


def add_latency_figures(rows: Sequence[dict[str, Any]], stats: Mapping[str, Mapping[str, Mapping[int, LatencyStats]]],
                        *, original: str = "original") -> None:
    """Write each row's latencies and speedups (``original``'s median / the row's, same runtime and batch, measured
    in the same block) into the row: ``latencies`` and ``speedups`` keyed by ``latency_key``, and the first
    runtime and batch size's figures as ``latency_ms`` / ``latency_spread`` / ``latency_noisy`` / ``speedup``."""
    base = stats[original]
    for row in rows:
        own = stats[row["variant"]]
        latencies = {latency_key(rt, b): s.to_dict() for rt, by_batch in own.items() for b, s in by_batch.items()}
        speedups = {latency_key(rt, b): base[rt][b].median_ms / s.median_ms
                    for rt, by_batch in own.items() for b, s in by_batch.items()}
        first = next(iter(latencies))
        row.update(latencies=latencies, speedups=speedups, latency_ms=latencies[first]["median_ms"],
                   latency_spread=latencies[first]["spread"], latency_noisy=latencies[first]["noisy"],
                   speedup=speedups[first], latency_runtime=first)


def describe_conditions(conditions: Mapping[str, Any], runtimes: Sequence[str], batch_sizes: Sequence[int]) -> str:
    """One line on how a table's latencies were measured (runtimes, threads, batch sizes, CPU, load)."""
    names = []
    for rt in runtimes:
        if rt == "onnxruntime":
            names.append(f"onnxruntime {conditions.get('onnxruntime_version', '')} (CPU, graph optimisation "
                         f"{conditions.get('graph_optimization', GRAPH_OPTIMIZATION)})")
        else:
            names.append(f"eager PyTorch {conditions.get('torch_version', torch.__version__)} ({conditions.get('device', 'cpu')})")
    return (f"Measured in {' and '.join(names)}, {conditions.get('threads')} thread(s), batch "
            f"{', '.join(map(str, batch_sizes))}; CPU {conditions.get('cpu', cpu_name())}, load "
            f"{conditions.get('loadavg_1_5_15')}.")


def identity_onnx(input_shape: Sequence[int]) -> bytes:
    """A one-node ONNX model that returns its input: what one session call costs besides the layer's compute (feeding
    the input, fetching the output, dispatch), subtracted from a standalone layer's timing."""
    require_onnx()
    from onnx import helper

    return _one_input_model([helper.make_node("Identity", ["x"], ["y"])], input_shape)


def _one_input_model(nodes: list[Any], input_shape: Sequence[int], initializers: Sequence[Any] = ()) -> bytes:
    """A serialized ONNX model of ``nodes`` from float input ``x`` of ``input_shape`` to output ``y``."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "amc", [x], [y], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime builds
    return model.SerializeToString()
