"""``make_report``: run what the report needs, then write its page (Q1-Q10).

The report's folder::

    OUT/index.html      the page, one self-contained file
    OUT/report.md       the same in Markdown, with the figures beside it
    OUT/figures/*.png   every figure of the page
    OUT/report.json     the key numbers (best validation and test accuracy, CE vs MSE, ...)
    OUT/sweeps/report-BUDGET/   the sweep (unless --sweep names another one)
    OUT/runs/           the other runs: q3-*, q8-*, q10-*

Every run has a fixed name derived from what it trains, so the same command run again
reuses every finished run, resumes an interrupted one, and trains only what is missing; a
sweep continues from its storage. All runs share one W&B group, ``report-BUDGET``.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import fastmlp
from fastmlp import data as datasets
from fastmlp.files import atomic_write_json, atomic_write_text
from fastmlp.report.budgets import Budget
from fastmlp.report.context import Context, ReportError, machine_line
from fastmlp.report.loss_comparison import section_q8
from fastmlp.report.mnist import section_q10
from fastmlp.report.page import Section, render_html, render_markdown
from fastmlp.report.plan import describe_plan, format_duration, plan_steps, seconds_per_epoch
from fastmlp.report.sections import (
    section_q1,
    section_q2,
    section_q3,
    section_q4,
    section_q5,
    section_q6,
    section_q7,
    section_q9,
)
from fastmlp.report.sweep_results import run_sweep, sweep_workers
from fastmlp.runs import resolve_wandb_mode


@dataclass
class ReportResult:
    """What :func:`make_report` wrote, and the key numbers of the page."""

    directory: Path
    index: Path
    markdown: Path
    numbers: dict[str, Any]
    seconds: float
    sections: list[Section] = field(default_factory=list)


def make_report(
    budget: Budget,
    *,
    out: str | PathLike[str] = "report",
    sweep_dir: str | PathLike[str] | None = None,
    data_dir: str | PathLike[str] | None = None,
    mnist_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    device: str | None = None,
    command: str | None = None,
    wandb_report: bool = False,
    wandb_project: str = "fastmlp",
    wandb_entity: str | None = None,
) -> ReportResult:
    """Run what the report needs and write it (see the module docstring).

    Args:
        budget: what to train (``BUDGETS.get("quick")``, or a Budget of your own).
        out: the report's folder.
        sweep_dir: a finished local sweep to report on instead of running the budget's.
        data_dir: where to look for Fashion-MNIST first; mnist_dir: where MNIST is (None:
            the usual search, then a download).
        wandb_mode: online / offline / disabled (None: resolved as for fastmlp train).
        device: where to train (None: auto).
        command: the command line shown as the way to reproduce the report.
        wandb_report: also create a W&B Report (when W&B is online; else one line says
            why not); wandb_project, wandb_entity: where every run and the Report go.

    Raises:
        UserError: bad input or missing data, with a one-line message.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after the running run saved its checkpoint.
    """
    from fastmlp.report import wandb_report as wandb_page

    started = time.monotonic()
    out = Path(out)
    wandb_report = wandb_report and wandb_page.check_wandb_report(wandb_mode)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder for the report")
    dataset = datasets.load("fashion_mnist", data_dir=data_dir, val_fraction=0.1)
    figures_dir = out / "figures"
    ctx = Context(
        budget=budget,
        out=out,
        data_dir=None if data_dir is None else str(data_dir),
        device=device,
        wandb_mode=resolve_wandb_mode(wandb_mode),
        group=budget.sweep_name,
        command=command or f"fastmlp report --budget {budget.name} --out {shlex.quote(str(out))}",
        figures=figures_dir,
        machine=machine_line(),
        wandb_project=wandb_project,
        wandb_entity=wandb_entity,
    )
    epoch_seconds = seconds_per_epoch(dataset, device)  # also: is the device usable?
    figures_dir.mkdir(parents=True, exist_ok=True)
    steps = plan_steps(budget, epoch_seconds, sweep_workers(device) or 1, sweep_dir is not None)
    print(describe_plan(budget, steps, epoch_seconds, str(sweep_dir or "")), flush=True)

    sweep = run_sweep(ctx, None if sweep_dir is None else str(sweep_dir))
    print("[q3] the six optimizers", flush=True)
    sections = [section_q1(ctx, dataset), section_q2(ctx, sweep), section_q3(ctx, sweep)]
    sections += [section_q4(ctx, sweep, sweep_dir is not None), section_q5(ctx, sweep)]
    sections += [section_q6(ctx, sweep), section_q7(ctx, sweep, dataset)]
    print("[q8] cross-entropy against squared error", flush=True)
    sections.append(section_q8(ctx, sweep, dataset))
    sections.append(section_q9(ctx))
    print("[q10] MNIST", flush=True)
    sections.append(section_q10(ctx, sweep, None if mnist_dir is None else str(mnist_dir)))
    title = "fastmlp report: a from-scratch MLP on Fashion-MNIST"
    if wandb_report:
        ctx.numbers["wandb_report_url"] = wandb_page.create_wandb_report(
            sections, project=wandb_project, entity=wandb_entity, group=ctx.group, title=title
        )
    ctx.numbers["training_seconds"] = {
        "sweep_trials": round(sweep.seconds, 1),
        "other_runs": round(sum(run.seconds for run in ctx.finished), 1),
    }
    result = write_page(ctx, title, sections, time.monotonic() - started)
    if ctx.wandb_mode != "disabled":
        wandb_page.log_page(
            sections,
            result.numbers,
            result.index,
            mode=ctx.wandb_mode,
            project=wandb_project,
            entity=wandb_entity,
            group=ctx.group,
            directory=out,
        )
    return result


def write_page(
    ctx: Context, title: str, sections: Sequence[Section], seconds: float
) -> ReportResult:
    """index.html, report.md and report.json in the report's folder."""
    trained = ctx.numbers["training_seconds"]
    meta = [
        f"Budget {ctx.budget.name}: {ctx.budget.summary}.",
        *(f"Note: {note}." for note in ctx.budget.notes),
        f"Made {time.strftime('%Y-%m-%d %H:%M %Z')} on {ctx.machine} with fastmlp "
        f"{fastmlp.__version__}. Training: {format_duration(trained['sweep_trials'])} in the "
        f"sweep's trials (summed over its workers), {format_duration(trained['other_runs'])} "
        f"in the {len(ctx.finished)} other runs; this invocation took "
        f"{format_duration(seconds)}. `{ctx.command}` makes it again, reusing finished runs.",
    ]
    index = atomic_write_text(ctx.out / "index.html", render_html(title, meta, sections))
    markdown = atomic_write_text(
        ctx.out / "report.md", render_markdown(title, meta, sections, ctx.out)
    )
    numbers = {"budget": ctx.budget.name, "fastmlp_version": fastmlp.__version__, **ctx.numbers}
    atomic_write_json(ctx.out / "report.json", numbers)
    return ReportResult(ctx.out, index, markdown, numbers, seconds, list(sections))
