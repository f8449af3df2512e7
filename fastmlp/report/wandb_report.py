"""The report on Weights & Biases: its figures and tables logged, and a W&B Report.

Every training run of a report is already a normal W&B run of the group ``report-BUDGET``.
:func:`log_page` adds one more run to that group, ``report-BUDGET-page`` (job type
``report``), holding every figure of the page (``q3/q3_optimizers``...), every table, the
page itself as HTML and the key numbers as its summary. With ``--wandb_report`` and W&B
online, :func:`create_wandb_report` builds a W&B Report (``wandb-workspaces``' Reports API)
with the same sections: each question's text, its figures from that run, and the group's
runs for W&B's own interactive panels. Without an account, or offline, it says so in one
line and the local report is made all the same; nothing ever prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastmlp.errors import MissingDependencyError
from fastmlp.report.page import Bullets, Code, Figure, Paragraph, Section, Table
from fastmlp.runs import WandbRun, resolve_wandb_mode, warn_once

INSTALL_HINT = 'pip install "fastmlp[report]"'


def check_wandb_report(wandb_mode: str | None) -> bool:
    """Whether a W&B Report can be made: wandb-workspaces installed (else a one-line
    MissingDependencyError) and W&B online (else one line saying why not, and False)."""
    try:
        import wandb_workspaces.reports.v2  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"--wandb_report needs the W&B Reports API: {INSTALL_HINT}"
        ) from None
    mode = resolve_wandb_mode(wandb_mode)
    if mode != "online":
        warn_once(
            f"--wandb_report: W&B is {mode} (no account logged in, or --wandb_mode "
            f"{mode}); making the local report only (wandb login, then run again)"
        )
        return False
    return True


def figure_key(section: Section, figure: Figure) -> str:
    """Where a figure is logged: ``q3/q3_optimizers``."""
    return f"{section.anchor}/{Path(figure.path).stem}"


def log_page(
    sections: Sequence[Section],
    numbers: dict[str, Any],
    index: Path,
    *,
    mode: str,
    project: str,
    entity: str | None,
    group: str,
    directory: Path,
) -> WandbRun | None:
    """Log the page's figures, tables, HTML and numbers as one run of ``group``."""
    run = WandbRun.start(
        mode=mode,
        project=project,
        entity=entity,
        name=f"{group}-page",
        config={"budget": numbers.get("budget")},
        directory=directory,
        group=group,
        job_type="report",
    )
    if run is None:
        return None
    import wandb

    logged: dict[str, Any] = {"page": wandb.Html(index.read_text(encoding="utf-8"), inject=False)}
    for section in sections:
        for number, block in enumerate(section.blocks):
            if isinstance(block, Figure):
                logged[figure_key(section, block)] = wandb.Image(
                    str(block.path), caption=block.caption
                )
            elif isinstance(block, Table):
                logged[f"{section.anchor}/table_{number}"] = wandb.Table(
                    columns=list(block.header),
                    data=[[str(cell) for cell in row] for row in block.rows],
                )
    run.log(logged)
    run.update_summary(
        {key: value for key, value in numbers.items() if not isinstance(value, dict)}
    )
    run.finish()
    return run


def _text(block: Any) -> str | None:
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Code):
        return (f"{block.caption}\n\n" if block.caption else "") + f"```\n{block.text}\n```"
    return None


def report_blocks(
    sections: Sequence[Section], project: str, entity: str | None, group: str
) -> list[Any]:
    """The W&B Report's blocks: per section its heading, text and a panel grid of its
    figures over the group's runs."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(
        project=project, entity=entity or "", name=group, filters=f"Metric('Group') == {group!r}"
    )
    blocks: list[Any] = [wr.TableOfContents()]
    for section in sections:
        blocks.append(wr.H2(section.title))
        texts = [text for text in map(_text, section.blocks) if text]
        if texts:
            blocks.append(wr.MarkdownBlock("\n\n".join(texts)))
        keys = [figure_key(section, block) for block in section.blocks if isinstance(block, Figure)]
        panels: list[Any] = (
            [wr.MediaBrowser(title=section.title, media_keys=keys, num_columns=1)] if keys else []
        )
        if section.anchor == "q6":
            panels.append(wr.ParallelCoordinatesPlot(columns=[], title="All runs of the report"))
        if section.anchor in ("q3", "q8", "q10"):
            panels.append(wr.LinePlot(title="validation accuracy", x="epoch", y=["val_accuracy"]))
        if panels:
            blocks.append(wr.PanelGrid(runsets=[runset], panels=panels))
    return blocks


def create_wandb_report(
    sections: Sequence[Section], *, project: str, entity: str | None, group: str, title: str
) -> str | None:
    """Create the W&B Report; its URL, or None (with one line saying why) when it fails."""
    import wandb_workspaces.reports.v2 as wr

    try:
        report = wr.Report(
            project=project,
            entity=entity or "",
            title=title,
            description=f"fastmlp report of the runs of group {group}",
            blocks=report_blocks(sections, project, entity, group),
        )
        report.save()
    except Exception as error:  # the network or the account: the local report stands
        warn_once(f"--wandb_report: W&B refused the report ({error}); the local report is made")
        return None
    return str(report.url)
