"""The dataset layout checker: counts per split and task, and every problem with its path.

Errors (``report.ok`` is False): missing folder, empty folder, unreadable/corrupt image, input/target size
mismatch, an input without target (a warning with ``dataset.skip_bad=true``, as are unreadable files),
``dataset.root`` unset for a real preset. Warnings: a target without input, an optional test set that is
absent, an image smaller than the patch size, a test set whose count differs from its ``expected`` (Urban100: 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .images import ImageReadError, image_size
from .layouts import Listing, Problem, Sample, RootNotSetError, require_root, test_listing, train_listing


WARNINGS_PER_KIND = 20


@dataclass
class Row:
    split: str
    name: str
    task: str
    count: int
    note: str = ""


@dataclass
class CheckReport:
    dataset: str
    kind: str
    root: str
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def render(self) -> str:
        head = f"dataset {self.dataset} (kind={self.kind}, root={self.root})"
        cols = ("split", "set", "task", "count", "note")
        data = [(r.split, r.name, r.task, str(r.count), r.note) for r in self.rows]
        widths = [max([len(c)] + [len(d[i]) for d in data]) for i, c in enumerate(cols)]
        fmt = "  ".join(f"{{:{'>' if i == 3 else '<'}{w}}}" for i, w in enumerate(widths))
        lines = [head, fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*d).rstrip() for d in data]
        n_err = len(self.errors)
        n_warn = len(self.problems) - n_err
        lines.append("")
        if self.problems:
            lines.append(f"{n_err} error(s), {n_warn} warning(s):")
            shown: dict[str, int] = {}
            for p in self.problems:  # every error; at most WARNINGS_PER_KIND warnings of a kind
                n = shown[p.kind] = shown.get(p.kind, 0) + 1
                if p.severity == "error" or n <= WARNINGS_PER_KIND:
                    lines.append("  " + p.line())
            for kind, n in shown.items():
                if n > WARNINGS_PER_KIND and all(p.severity != "error" for p in self.problems if p.kind == kind):
                    lines.append(f"  ... and {n - WARNINGS_PER_KIND} more '{kind}' warnings")
        else:
            lines.append("no problems found")
        lines.append("OK" if self.ok else "NOT OK: fix the errors above (or set dataset.skip_bad=true to skip bad files)")
        return "\n".join(lines)


def _verify(listing: Listing, skip_bad: bool, patch: int | None = None,
            holdout: float = 0.0) -> tuple[int, list[Problem]]:
    """Open every file of ``listing`` (header + structure); returns (#good pairs, problems). ``holdout``:
    the right-hand fraction of each image that training crops never touch (synthetic presets)."""
    problems, good = [], 0
    sev = "warning" if skip_bad else "error"
    sizes: dict[str, tuple[int, int] | None] = {}

    def size_of(p):
        if p not in sizes:
            try:
                sizes[p] = image_size(p)
            except ImageReadError as e:
                sizes[p] = None
                problems.append(Problem(sev, "unreadable", p, e.reason))
        return sizes[p]

    for s in listing.samples:
        st = size_of(s.target)
        si = size_of(s.input) if s.input is not None else st
        if st is None or si is None:
            continue
        if si != st:
            problems.append(Problem(sev, "size mismatch", s.input,
                                    f"{si[0]}x{si[1]} vs target {s.target} {st[0]}x{st[1]}"))
            continue
        train_w = st[1] if holdout <= 0 else max(1, min(st[1] - 1, int(round(st[1] * (1 - holdout)))))
        if patch is not None and min(st[0], train_w) < patch:
            region = "" if train_w == st[1] else f" (training region {st[0]}x{train_w})"
            problems.append(Problem("warning", "smaller than patch", s.target,
                                    f"{st[0]}x{st[1]}{region} < patch_size {patch} (padded)"))
        good += 1
    return good, problems


def add_listing(report: CheckReport, lst: Listing, verify: bool, skip_bad: bool, patch: int | None) -> int:
    """Add a listing's problems (and, when ``verify``, those found by opening its files) to ``report``;
    returns the number of good pairs."""
    report.problems += lst.problems
    if not verify:
        return len(lst.samples)
    good, probs = _verify(lst, skip_bad, patch)
    report.problems += probs
    return good


def _check_synthetic(cfg, report: CheckReport, verify: bool):
    from .synthetic import clean_image_paths

    try:
        paths = clean_image_paths(cfg)
    except (FileNotFoundError, ValueError) as e:
        report.problems.append(Problem("error", "missing folder", str(cfg.root), str(e)))
        return
    if not paths:
        report.problems.append(Problem("error", "empty folder", str(cfg.root), "no clean images"))
        return
    listing = Listing([Sample(str(p), None, p.stem) for p in paths])
    good = len(paths)
    if verify:
        good, probs = _verify(listing, bool(cfg.skip_bad), int(cfg.patch_size), float(cfg.val.holdout))
        report.problems += probs
    source = "scikit-image photos" if cfg.root is None else str(cfg.root)
    report.rows.append(Row("clean", source, "-", good, f"{len(paths)} files"))
    repeat = dict(cfg.repeat or {})
    for t in cfg.tasks:
        report.rows.append(Row("train", "synthetic", t, int(cfg.epoch_size) * int(repeat.get(t, 1)),
                               "crops per epoch"))
    for t in cfg.tasks:
        report.rows.append(Row("val", t, t, int(cfg.val.crops_per_task), f"{cfg.val.crop_size}px crops"))
    try:  # every task must have a recipe
        from .degradations import get_recipe

        for t in cfg.tasks:
            get_recipe(t, cfg.recipes)
    except ValueError as e:
        report.problems.append(Problem("error", "unknown task", "dataset.tasks", str(e)))


def _check_real(cfg, report: CheckReport, verify: bool):
    try:
        root = require_root(cfg)
    except RootNotSetError as e:
        report.problems.append(Problem("error", "root not set", "dataset.root", str(e)))
        return
    if not root.is_dir():
        report.problems.append(Problem("error", "missing folder", str(root), "dataset.root does not exist"))
        return
    skip = bool(cfg.skip_bad)
    repeat = dict(cfg.repeat or {})
    for task in cfg.tasks:
        try:
            lst = train_listing(cfg, task)
        except ValueError as e:
            report.problems.append(Problem("error", "unknown task", "dataset.tasks", str(e)))
            continue
        good = add_listing(report, lst, verify, skip, int(cfg.patch_size))
        r = int(repeat.get(task, 1))
        report.rows.append(Row("train", task, task, good, f"x{r} repeat" if r != 1 else ""))
    for name, spec in (cfg.test_sets or {}).items():
        lst = test_listing(cfg, spec)
        if not spec.required and any(p.kind == "missing folder" for p in lst.problems):
            report.problems.append(Problem("warning", "optional set absent", str(root / str(spec.path))))
            continue
        report.problems += lst.problems
        good = len(lst.samples)
        if verify:
            good, probs = _verify(lst, skip)
            report.problems += probs
        if spec.get("expected") is not None and good != int(spec.expected):
            report.problems.append(Problem("warning", "unexpected count", str(root / str(spec.path)),
                                           f"{good} images, the published {name} has {spec.expected}"))
        report.rows.append(Row("test", str(name), str(spec.task), good, str(spec.path)))


def check_dataset(cfg, verify: bool = True) -> CheckReport:
    """Check the preset's folders: counts per split and task, and every problem with its path.
    ``verify`` opens every image (header and structure) to find corrupt files and size mismatches."""
    report = CheckReport(str(cfg.name), str(cfg.kind), str(cfg.root))
    if cfg.kind == "synthetic":
        _check_synthetic(cfg, report, verify)
    elif cfg.kind in ("aio", "cdd11", "mio"):
        _check_real(cfg, report, verify)
    elif cfg.kind == "folder":
        from .folder import check_folder

        check_folder(cfg, report, verify)
    else:
        report.problems.append(Problem("error", "unknown kind", "dataset.kind",
                                       f"{cfg.kind!r} (synthetic | aio | cdd11 | mio | folder)"))
    seen, unique = set(), []
    for p in report.problems:  # tasks sharing a folder (denoise_15/25/50) report a file once
        key = (p.severity, p.kind, p.path)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    report.problems = unique
    return report
