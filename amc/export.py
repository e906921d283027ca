"""Export a pruned model to ONNX with a parity and latency report: ``python -m amc.export <pruned dir> [--out DIR]``.

Writes ``model.onnx`` (dynamic batch axis) and ``export_report.json`` / ``export_report.md``: the max |logit
difference| and top-1 agreement between PyTorch and onnxruntime on test images, and the batch-1 and batch-64 latency
of the original (base checkpoint) and the pruned model under both runtimes, all timed in one interleaved block.

The exporter is torch's TorchScript path (``torch.onnx.export(..., dynamo=False)``): it needs no onnxscript, exports
our zoo in about a second (the dynamo exporter took 12-18 s per model here) and folds BatchNorm into the convolutions.
It is deprecated since torch 2.9 but present in the pinned torch; the dynamo path is the way out if it is removed.
Existing files are never overwritten (the work: ``amc.artifacts.onnx_export``). Needs the ``export`` extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from amc.artifacts.onnx_export import DATASETS, PLAN_FILE, WEIGHTS_FILE, export_pruned, format_export_report
from amc.measure.runtime import MAX_OPSET, OPSET


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amc-export", description=__doc__.splitlines()[0])
    parser.add_argument("pruned_dir", type=Path, help=f"a dir with {PLAN_FILE} and {WEIGHTS_FILE}")
    parser.add_argument("--out", type=Path, default=None, help="where model.onnx and the report go (default: pruned_dir)")
    parser.add_argument("--data", choices=DATASETS, default=None,
                        help="test images for parity and latency (default: the base checkpoint's dataset)")
    parser.add_argument("--data-root", default=None, help="dataset dir (fashion_mnist has a default; cifar10 and image_folder need it)")
    parser.add_argument("--base-checkpoint", default=None, help="the base checkpoint, if not where the plan says")
    parser.add_argument("--model-allow", action="append", default=[], metavar="PREFIX",
                        help="import prefix a non-zoo base model may come from (repeatable)")
    parser.add_argument("--num-images", type=int, default=512, help="test images for the parity check")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both runtimes (default: torch's)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (7..{MAX_OPSET})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = export_pruned(args.pruned_dir, args.out, dataset=args.data, data_root=args.data_root,
                               base_checkpoint=args.base_checkpoint, allow=args.model_allow, num_images=args.num_images,
                               threads=args.threads, warmup=args.warmup, repeats=args.repeats, opset=args.opset)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"amc-export: error: {e}", file=sys.stderr)
        return 2
    out = Path(report["onnx"]).parent
    print(format_export_report(report))
    print(f"wrote {report['onnx']}, {out / 'export_report.json'} and {out / 'export_report.md'}")
    parity = report["parity"]
    if not parity["ok"]:
        print(f"amc-export: error: max |logit difference| {parity['max_abs_logit_diff']:.2e} exceeds "
              f"{parity['tolerance']:g}: the ONNX model does not match PyTorch", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
