"""Command line: ``python -m fastconv bench [--quick] [--json PATH] [--png PATH] [--section NAME ...]``;
``train [...]``.

``bench`` prints the benchmark report: one table per op family, GFLOP/s or GB/s of fastconv next to
the machine's measured limits and, when installed, torch and onnxruntime side by side, then the
training epoch and cold-start sections. ``--json`` writes every row; ``--png`` draws fastconv's ratio
to the best peer per case (needs matplotlib).
"""

import argparse
import importlib
import json
import sys

SECTIONS = ("conv", "conv64", "conv_transpose", "backward", "pool", "train", "coldstart")


def _bench(args):
    from .benchmarks.common import format_table

    report = {}
    for name in args.section or SECTIONS:
        try:
            module = importlib.import_module(f"fastconv.benchmarks.{name}")
        except ModuleNotFoundError:
            continue
        rows = module.run(quick=args.quick)
        report[module.SECTION] = rows
        print(f"\n## {module.SECTION}" + (" (quick sizes)" if args.quick else ""))
        columns = getattr(module, "COLUMNS", None) or [(k, k, None) for k in rows[0]]
        print(format_table(rows, columns), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    if args.png:
        _plot_ratios(report, args.png)
    return 0


def _plot_ratios(report, path):
    """Bar chart of every row's ``ratio`` (fastconv / best peer, > 1 is faster) to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--png: matplotlib is not installed, {path} not written (pip install matplotlib)", file=sys.stderr)
        return
    labels, ratios = [], []
    for section, rows in report.items():
        for row in rows:
            if isinstance(row.get("ratio"), (int, float)):
                labels.append(f"{section}: {row.get('case') or row.get('layer') or row.get('backend')}")
                ratios.append(row["ratio"])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(labels) + 1.5))
    ax.barh(range(len(labels)), ratios, color=["tab:green" if r >= 1 else "tab:red" for r in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("fastconv speed / best peer (torch, onnxruntime)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"chart: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="print the benchmark report")
    bench.add_argument("--quick", action="store_true", help="small batch sizes (seconds, for CI)")
    bench.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    bench.add_argument("--png", metavar="PATH", help="also draw the ratios to the best peer (matplotlib)")
    bench.add_argument("--section", action="append", choices=SECTIONS, help="only these sections")
    sub.add_parser("train", add_help=False, help="train a small CNN on the digits (python -m fastconv train --help)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # every option belongs to the example's own parser
        from .nn.train_digits import main as train_main

        return train_main(argv[1:], prog="python -m fastconv train")
    args = parser.parse_args(argv)
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
