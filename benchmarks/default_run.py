"""Time the embedded default run (`aio-train` with no arguments) and report how much it restores.

Runs `aio-train` in a fresh outputs folder exactly as a new user would, then reads the final validation
metrics of the (EMA) model back from MLflow. Prints wall time, images/s, and average PSNR of the degraded
inputs vs the restored outputs, and writes benchmarks/results/default_run.json (with overrides, only when
``--out NAME`` names the file: benchmarks/results/NAME.json).

    .venv/bin/python benchmarks/default_run.py                                     # the default run
    .venv/bin/python benchmarks/default_run.py --out default_run_bf16 trainer.amp=bf16   # the same in bf16
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


if __name__ == "__main__":
    args = sys.argv[1:]
    name = None
    if args[:1] == ["--out"]:
        if len(args) < 2:
            sys.exit("--out needs a file name (without .json)")
        name, args = args[1], args[2:]
    main(args, name)
