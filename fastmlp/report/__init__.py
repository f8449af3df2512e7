"""``fastmlp report``: the assignment's ten questions answered from one command.

* :mod:`~fastmlp.report.budgets`        -- quick, standard, full: what a report trains;
* :mod:`~fastmlp.report.plan`           -- the plan and its duration on this machine;
* :mod:`~fastmlp.report.runner`         -- the report's runs, reused or resumed;
* :mod:`~fastmlp.report.context`        -- what every step shares, run names by settings;
* :mod:`~fastmlp.report.sweep_results`  -- the sweep, run or read, its trials ranked;
* :mod:`~fastmlp.report.sections`       -- Q1-Q7 and Q9 (Q3 trains the six optimizers);
* :mod:`~fastmlp.report.loss_comparison` -- Q8, cross-entropy against squared error;
* :mod:`~fastmlp.report.mnist`          -- Q10, three configurations on MNIST;
* :mod:`~fastmlp.report.build`          -- ``make_report``: the steps in order, the page;
* :mod:`~fastmlp.report.observations`   -- what the sweep shows, written from its trials;
* :mod:`~fastmlp.report.loss_gradients` -- why cross-entropy and squared error differ;
* :mod:`~fastmlp.report.figures`        -- curves of several runs, seed-to-seed spread;
* :mod:`~fastmlp.report.page`           -- the self-contained HTML page and its Markdown;
* :mod:`~fastmlp.report.wandb_report`   -- the figures on W&B, and a W&B Report.

It sits beside ``fastmlp.sweep`` in the application layer: it uses sweeps and runs, and
nothing in the library or in ``fastmlp.runs`` imports it.
"""

from fastmlp.report.budgets import BUDGETS, Budget
from fastmlp.report.build import ReportResult, make_report

__all__ = ["BUDGETS", "Budget", "ReportResult", "make_report"]
