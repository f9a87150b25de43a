"""Reading a sweep back without Ray: the trial table (``trials``), the choice of the best trial or the
Pareto set (``select``), the printed report (``table``), exports (``export``) and the study's plots (``plots``)."""

from sweeps.layout import BEST_FILE
from sweeps.report.export import ExportedTrial, export_best, export_pareto, write_best_config
from sweeps.report.select import pick_best
from sweeps.report.table import format_report
from sweeps.report.trials import TrialRow, collect_trials

__all__ = ["BEST_FILE", "ExportedTrial", "TrialRow", "collect_trials", "export_best", "export_pareto", "format_report",
           "pick_best", "write_best_config"]
