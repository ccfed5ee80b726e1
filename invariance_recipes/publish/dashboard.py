"""The comparison dashboard as code: a saved W&B workspace view built with ``wandb-workspaces``.

Runs are grouped by variant (mean ± std over seeds) and filtered to one experiment group
and dataset. Sections: consistency per protocol (bars), accuracy vs offset (the per-run
curve and bars per offset), accuracy vs consistency (scatter) and a run comparer.

Every key the view reads is one the training run logs (``test/*``, ``val/*``, the curve
table) or one of its config options; a test checks them against a real offline run.
Needs the ``dashboard`` extra: ``pip install -e .[dashboard]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from invariance_recipes.lightning_modules.metrics.report import REPORTED_MODES

GROUP_BY = "variant"  # config key: the preset a run trained
EXPERIMENT = "experiment"  # config key: the W&B group of one comparison
DATASET = "data.dataset"  # config key
SCALARS = ("test/acc", "test/flip_rate", "val/acc", "val/consistency")
# The modes of the classifier's test report (tests/test_dashboard.py checks each key
# against a real run, so a change there fails a test instead of showing an empty panel).
CONSISTENCY = tuple(f"test/consistency_{mode}" for mode in REPORTED_MODES)
CURVE_TABLE = "test/acc_vs_shift_table"  # wandb.plot.line stores its data as KEY_table


def default_curve_max_shift() -> int:
    """The classifier's own default, so the dashboard reads the keys a default run logs."""
    from invariance_recipes.lightning_modules.classifier import InvarianceClassifier

    return inspect.signature(InvarianceClassifier).parameters["curve_max_shift"].default


def curve_keys(max_shift: int) -> list[str]:
    """The accuracy-at-offset keys of the diagonal sweep ``-max_shift .. +max_shift``."""
    from invariance_recipes.lightning_modules.shifts import offset_sweep

    return [
        f"test/acc_at_shift/{dy:+d}_{dx:+d}"
        for dy, dx in offset_sweep(max_shift, "diagonal").tolist()
    ]


def _import_workspaces() -> tuple[Any, Any, Any]:
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError:
        raise ValueError(
            "the dashboard needs wandb-workspaces: pip install -e .[dashboard]"
        ) from None
    return ws, wr, expr


def build_workspace(
    entity: str,
    project: str,
    experiment: str | None = None,
    dataset: str | None = None,
    curve_max_shift: int | None = None,
) -> Any:
    """The workspace view (not saved): grouped by variant, mean ± std over seeds."""
    ws, wr, expr = _import_workspaces()
    curve = curve_keys(curve_max_shift or default_curve_max_shift())
    spread = {
        "groupby": wr.Config(GROUP_BY),
        "groupby_aggfunc": "mean",
        "groupby_rangefunc": "stddev",
    }
    consistency = [
        wr.BarPlot(title=f"consistency ({key.rsplit('_', 1)[1]} shifts)", metrics=[key], **spread)
        for key in CONSISTENCY
    ]
    consistency.append(wr.BarPlot(title="flip rate", metrics=["test/flip_rate"], **spread))
    offsets = [
        wr.CustomChart(
            query={"summaryTable": {"tableKey": CURVE_TABLE}},
            chart_name="wandb/line/v0",
            chart_fields={"x": "dx", "y": "accuracy"},
        ),
        wr.BarPlot(title="accuracy at each diagonal offset", metrics=curve, **spread),
    ]
    scatter = [
        wr.ScatterPlot(
            title=f"accuracy vs consistency ({key.rsplit('_', 1)[1]})", x=key, y="test/acc"
        )
        for key in CONSISTENCY
    ]
    training = [
        wr.LinePlot(title=key, x="Step", y=[key], **spread)
        for key in ("val/acc", "val/consistency")
    ]
    filters = []
    if experiment:
        filters.append(expr.Config(EXPERIMENT) == experiment)
    if dataset:
        filters.append(expr.Config(DATASET) == dataset)
    name = " ".join(["invariance", *(x for x in (experiment, dataset) if x)])
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[
            ws.Section(name="consistency per protocol", panels=consistency),
            ws.Section(name="accuracy vs offset", panels=offsets),
            ws.Section(name="accuracy vs consistency", panels=scatter),
            ws.Section(name="training curves", panels=training),
            ws.Section(name="run comparer", panels=[wr.RunComparer(diff_only="split")]),
        ],
        runset_settings=ws.RunsetSettings(
            groupby=[expr.Config(GROUP_BY)],
            filters=filters,
            pinned_columns=[
                f"config:{GROUP_BY}",
                *(f"summary:{k}" for k in ("test/acc", *CONSISTENCY)),
            ],
        ),
    )


#: the entity a --dry-run without --entity shows
DRY_RUN_ENTITY = "ENTITY"


def workspace_spec(workspace: Any) -> dict[str, Any]:
    """The view as W&B stores it (JSON), built offline."""
    return workspace._to_model().model_dump(mode="json", by_alias=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--entity", default=None, help="W&B entity (user or team); needed to save the view"
    )
    parser.add_argument("--project", default="invariance-recipes", help="W&B project")
    parser.add_argument("--experiment", default=None, help="show one comparison's W&B group")
    parser.add_argument("--dataset", default=None, help="show runs of one dataset")
    parser.add_argument(
        "--curve_max_shift",
        type=int,
        default=None,
        help="the runs' --model.curve_max_shift (default: the model's default)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print a summary of the view; save nothing"
    )
    parser.add_argument(
        "--spec",
        default=None,
        metavar="FILE",
        help="with --dry-run: also write the view's spec, the JSON W&B stores, to FILE (- for "
        "standard output)",
    )
    args = parser.parse_args(argv)
    if args.entity is None and not args.dry_run:
        parser.error("--entity is required to save the view (or pass --dry-run)")
    return args


def summarize(workspace: Any) -> str:
    """What the view holds, one line per section, instead of its whole JSON."""
    sections = [f"  {s.name}: {len(s.panels)} panels" for s in workspace.sections]
    total = sum(len(s.panels) for s in workspace.sections)
    filters = workspace.runset_settings.filters or "all runs"
    return "\n".join(
        [
            f"{workspace.name!r} in {workspace.entity}/{workspace.project}: "
            f"{len(sections)} sections, {total} panels; runs: {filters}",
            *sections,
        ]
    )


def dashboard_command(argv: list[str]) -> int:
    """``dashboard.py``: build the view, then save it (print its URL) or print its spec."""
    args = parse_args(argv)
    try:
        workspace = build_workspace(
            args.entity or DRY_RUN_ENTITY,
            args.project,
            args.experiment,
            args.dataset,
            args.curve_max_shift,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(summarize(workspace))
        if args.spec == "-":
            print(json.dumps(workspace_spec(workspace), indent=1))
        elif args.spec:
            Path(args.spec).write_text(json.dumps(workspace_spec(workspace), indent=1))
            print(f"spec written to {args.spec}")
        else:
            print("(--spec FILE writes the JSON that W&B stores)")
        return 0
    from invariance_recipes.run.loggers import wandb_mode

    if wandb_mode() == "offline":
        print(
            "error: saving the view needs a W&B login (wandb login) and its server; "
            "pass --dry-run to print the spec offline",
            file=sys.stderr,
        )
        return 2
    workspace.save()
    print(workspace.url)
    return 0
