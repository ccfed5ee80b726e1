"""The benchmark's command line: every section at each thread count, one CSV and Markdown.

    python recipes/benchmark.py                  # CPU, default threads then 1 thread
    python recipes/benchmark.py --threads 2 1    # the thread counts to run at
    python recipes/benchmark.py --device cuda    # adds bfloat16 rows; writes cuda.{csv,md}
    python recipes/benchmark.py --quick          # tiny shapes: a smoke test of this script
    python recipes/benchmark.py --only layers translate --rounds 21
    python recipes/benchmark.py --only blur-paths --out docs/benchmarks/blur-paths

Every row compares one of ours with a baseline timed in the same rounds (see ``timing.py``)
at the thread count in its ``threads`` column: ``ratio`` is ours' time per call over the
baseline's, the median over rounds (lower is faster), ``spread`` the interquartile range of
the per-round ratios, and ``target`` the largest ratio the project aims for. The sections and
their baselines are in :data:`~invariance_recipes.benchmarks.sections.SECTIONS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from invariance_recipes.benchmarks.report import describe_machine, markdown, write_csv
from invariance_recipes.benchmarks.rows import FULL, QUICK, Config, Row
from invariance_recipes.benchmarks.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the project's fast paths against their baselines, side by side.",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few rounds")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks",
        help="folder for DEVICE.csv and DEVICE.md (DEVICE-quick.* with --quick)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=[name for name, section in SECTIONS.items() if section.by_default],
        help="sections to run (default: all but "
        + " and ".join(name for name, section in SECTIONS.items() if not section.by_default)
        + ", the measurements behind a choice table: the BlurPool2d paths and each "
        "downsampling method's compile default)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per timing")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch CPU thread counts to run at (default: the process's default, then 1)",
    )
    return parser.parse_args(argv)


def run(argv: list[str]) -> list[Row]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: CUDA is not available on this machine; run with --device cpu"
        )
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for the CSV and Markdown")
    for option in ("rounds", "threads"):
        values = getattr(args, option)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and value < 1:
                raise ValueError(f"--{option} {value}: pass a positive integer")
    thread_counts = list(dict.fromkeys(args.threads or [torch.get_num_threads(), 1]))
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        cfg = Config(**{**asdict(cfg), "rounds": args.rounds, "run_rounds": args.rounds})
    device = torch.device(args.device)
    _quiet()
    machine = describe_machine(device)
    print(f"machine: {machine}", flush=True)
    rows: list[Row] = []
    notes: list[str] = []
    default_threads = torch.get_num_threads()
    try:
        for index, threads in enumerate(thread_counts):
            torch.set_num_threads(threads)
            for name in args.only:
                if index and not SECTIONS[name].per_thread_count:
                    continue
                print(f"[{name}, {threads} thread{'s' * (threads != 1)}] ...", flush=True)
                new = SECTIONS[name].rows(cfg, device, notes)
                for row in new:
                    print(
                        f"  {row.ours} vs {row.baseline} ({row.setting}): {row.ratio:.3g} "
                        f"(target {row.target_text}: {_VERDICTS[row.verdict]})",
                        flush=True,
                    )
                rows += new
    finally:
        torch.set_num_threads(default_threads)
    stem = args.device + ("-quick" if args.quick else "")
    command = "python recipes/benchmark.py" + ("" if not argv else " " + " ".join(argv))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{stem}.csv")
    table = markdown(rows, command, machine, notes)
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {args.out / stem}.csv and .md")
    return rows


_VERDICTS = {"yes": "holds", "no": "MISSED", "n/a": "a cost"}


def _quiet() -> None:
    """Keep Lightning's per-run banners and hints out of the report."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
