"""Time the embedded default run (`aio-train` with no arguments) and report how much it restores.

Runs `aio-train` in a fresh outputs folder exactly as a new user would, then reads the final validation
metrics of the (EMA) model back from MLflow. Prints wall time, images/s, and average PSNR of the degraded
inputs vs the restored outputs, and writes benchmarks/results/default_run.json (with overrides, only when
``--out NAME`` names the file: benchmarks/results/NAME.json).

    .venv/bin/python benchmarks/default_run.py                                     # the default run
    .venv/bin/python benchmarks/default_run.py --out default_run_bf16 trainer.amp=bf16   # the same in bf16
    .venv/bin/python benchmarks/default_run.py --seeds 0,1,2 --out default_run_seeds          # the seed spread
    .venv/bin/python benchmarks/default_run.py --seeds 0,1,2 --out default_run_bf16_seeds \
        --paired-with default_run_seeds trainer.amp=bf16

With ``--seeds``, the run is repeated once per ``seed=`` and the file holds every run plus the mean and sample
standard deviation of the restored PSNR: how far two single runs that differ only in their seed (or in their
arithmetic, such as bf16 against fp32) fall apart on their own. ``--paired-with NAME`` adds, per seed, this
run's restored PSNR minus that of ``benchmarks/results/NAME.json`` (a ``--seeds`` file of the same seeds): the
paired gap, which compares two settings at the same seed, data and initialisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(overrides: list[str], out: str | None = None) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="aio-default-run-") as tmp:
        env = {**os.environ, "AIO_OUTPUTS": tmp}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "aio.cli.train", *overrides], env=env, text=True,
                              capture_output=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"aio-train failed:\n{proc.stderr[-3000:]}")
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        exp = client.get_experiment_by_name("aio")
        run = client.search_runs([exp.experiment_id], max_results=1)[0]
        m = run.data.metrics
        result = {
            "command": "aio-train " + " ".join(overrides),
            "wall_s": round(wall, 1),
            "steps": int(run.data.params["trainer.max_steps"]),
            "params_m": round(m["model/params_m"], 4),
            "train_images_per_s": round(m["train/images_per_s"], 1),
            "val_psnr_input_db": round(m["val/avg/psnr_input"], 2),
            "val_psnr_restored_db": round(m["val/avg/psnr"], 2),
            "gain_db": round(m["val/avg/psnr"] - m["val/avg/psnr_input"], 2),
            "per_set_gain_db": {
                k.split("/")[1]: round(m[k] - m[k + "_input"], 2)
                for k in m if k.startswith("val/") and k.endswith("/psnr") and "/avg/" not in k
            },
            "cpu_count": os.cpu_count(),
            "torch_threads": __import__("torch").get_num_threads(),
        }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    if out or not overrides:
        (RESULTS / f"{out or 'default_run'}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_paired(name: str, seeds: list[int]) -> dict:
    """The ``--seeds`` result ``benchmarks/results/NAME.json``, checked to hold every seed of ``seeds``."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        sys.exit(f"--paired-with {name}: {path} does not exist; name a --seeds result there (without .json)")
    other = json.loads(path.read_text())
    missing = sorted(set(seeds) - set(other.get("seeds", [])))
    if missing:
        sys.exit(f"--paired-with {name}: {path.name} has no run at seed(s) {missing}; "
                 f"pair it with --seeds {','.join(map(str, other.get('seeds', [])))}")
    return other


def paired_gaps(seeds: list[int], psnr: list[float], name: str, other: dict) -> dict:
    """Per seed, ``psnr`` minus ``other``'s restored PSNR at that seed; their mean and largest magnitude."""
    theirs = dict(zip(other["seeds"], other["val_psnr_restored_db"]))
    gaps = [round(p - theirs[s], 2) for s, p in zip(seeds, psnr)]
    return {"paired_with": name, "paired_command": other["command"], "paired_gap_db": gaps,
            "paired_gap_mean_db": round(sum(gaps) / len(gaps), 2), "paired_gap_max_abs_db": max(map(abs, gaps))}


def seed_spread(overrides: list[str], seeds: list[int], out: str | None = None, paired: str | None = None) -> dict:
    """``main`` once per seed; the runs, the mean and sample std of their restored PSNR and, with ``paired``
    (a ``--seeds`` result's name), the per-seed gap to it."""
    import statistics

    other = load_paired(paired, seeds) if paired else None
    runs = [main([*overrides, f"seed={s}"]) for s in seeds]
    psnr = [r["val_psnr_restored_db"] for r in runs]
    result = {
        "command": "aio-train " + " ".join(overrides),
        "seeds": seeds,
        "val_psnr_restored_db": psnr,
        "mean_psnr_db": round(statistics.mean(psnr), 2),
        "std_psnr_db": round(statistics.stdev(psnr), 2) if len(psnr) > 1 else 0.0,
        **(paired_gaps(seeds, psnr, paired, other) if other else {}),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if out:
        (RESULTS / f"{out}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    name, seeds, paired = None, None, None
    while args[:1] in (["--out"], ["--seeds"], ["--paired-with"]):
        if len(args) < 2:
            sys.exit(f"{args[0]} needs a value: --out NAME (a file name without .json), --seeds 0,1,2, "
                     "--paired-with NAME (a --seeds result)")
        if args[0] == "--out":
            name = args[1]
        elif args[0] == "--paired-with":
            paired = args[1]
        else:
            try:
                seeds = [int(s) for s in args[1].split(",") if s.strip()]
            except ValueError:
                sys.exit(f"--seeds {args[1]}: give integers separated by commas, e.g. --seeds 0,1,2")
        args = args[2:]
    if [a for a in args if a.startswith("seed=")] and seeds:
        sys.exit("--seeds sets seed= for each run; drop the seed= override")
    if paired and not seeds:
        sys.exit(f"--paired-with {paired} compares seed by seed: give --seeds too, e.g. --seeds 0,1,2")
    if seeds:
        seed_spread(args, seeds, name, paired)
    else:
        main(args, name)
