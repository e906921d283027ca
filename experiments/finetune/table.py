"""Fine-tune table of issue 11 from ``run_finetune.sh`` outputs: ``python experiments/finetune/table.py <root>...``.

One row per ``<root>/<name>_kd<alpha>/metrics.json``: the pruned model before and after fine-tuning, the unpruned
teacher, the points lost against it, and AMC's lead over uniform at the same epochs and distillation setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(roots: list[Path]) -> list[dict]:
    rows = []
    for root in roots:
        for path in sorted(root.glob("*_kd*/metrics.json")):
            m = json.loads(path.read_text())
            name = path.parent.name.rsplit("_kd", 1)[0]
            method, _, net = name.partition("_")
            rows.append({"method": method, "net": net, "kd": m["kd"]["alpha"], "epochs": m["epochs"],
                         "macs_ratio": m["macs_ratio"], "before": m["before"]["test_acc"], "after": m["after"]["test_acc"],
                         "rv_after": m["after"]["reward_val_acc"], "teacher": m["teacher"]["test_acc"],
                         "s_epoch": m["seconds_per_epoch"], "dir": str(path.parent)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    rows = load(parser.parse_args(argv).roots)
    if not rows:
        print("no <name>_kd<alpha>/metrics.json under the given roots", file=sys.stderr)
        return 2
    rows.sort(key=lambda r: (r["net"], r["epochs"], -r["kd"], r["method"]))
    print("| network | epochs | KD alpha | method | MACs ratio | test before | test after | reward-val after | "
          "unpruned test | after − unpruned | AMC − uniform after | s / epoch |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        uni = [u for u in rows if u["method"] == "uniform" and (u["net"], u["epochs"], u["kd"]) == (r["net"], r["epochs"], r["kd"])]
        lead = f"{100 * (r['after'] - uni[0]['after']):+.2f}" if r["method"] == "amc" and uni else ""
        print(f"| {r['net']} | {r['epochs']} | {r['kd']} | {r['method']} | {r['macs_ratio']:.3f} | "
              f"{100 * r['before']:.2f}% | {100 * r['after']:.2f}% | {100 * r['rv_after']:.2f}% | {100 * r['teacher']:.2f}% | "
              f"{100 * (r['after'] - r['teacher']):+.2f} | {lead} | {r['s_epoch']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
