"""The one-line start-of-training summary of what the data pipeline will skip or pad.

Counted from the layout checker's report (:func:`aio.data.check_dataset`), so the trainer, ``aio-data
check`` and MLflow agree: files skipped because ``dataset.skip_bad=true`` turned an error into a warning
(unreadable, unpaired input, size mismatch), and images smaller than ``dataset.patch_size`` (padded).
"""

from __future__ import annotations

from dataclasses import dataclass

SKIPPED_KINDS = ("unreadable", "unpaired input", "size mismatch")
PADDED_KIND = "smaller than patch"


@dataclass
class DataSummary:
    skipped: int
    padded: int
    patch_size: int

    def line(self) -> str:
        parts = [f"{self.skipped} bad file(s) skipped (dataset.skip_bad=true)" if self.skipped else "no file skipped",
                 f"{self.padded} image(s) smaller than patch_size {self.patch_size} padded" if self.padded
                 else "no image padded"]
        hint = "; `aio-data check` lists them" if self.skipped or self.padded else ""
        return f"[aio] data: {', '.join(parts)}{hint}"


def summarize(report, patch_size: int) -> DataSummary:
    """Count the skipped and padded files of a checker report (warnings only: errors stop the run)."""
    warnings = [p for p in report.problems if p.severity == "warning"]
    return DataSummary(skipped=len({p.path for p in warnings if p.kind in SKIPPED_KINDS}),
                       padded=len({p.path for p in warnings if p.kind == PADDED_KIND}), patch_size=int(patch_size))


def log_data_summary(report, tracker, patch_size: int) -> DataSummary:
    """Print the summary line and record it in the run (tag ``aio.data_summary``, metrics ``data/skipped``,
    ``data/padded``); the trainer's single call."""
    from aio.tracking import names

    summary = summarize(report, patch_size)
    print(summary.line())
    tracker.set_tags({names.TAG_DATA_SUMMARY: summary.line().removeprefix("[aio] data: ")})
    tracker.log_metrics({names.DATA_SKIPPED: float(summary.skipped), names.DATA_PADDED: float(summary.padded)}, step=0)
    return summary
