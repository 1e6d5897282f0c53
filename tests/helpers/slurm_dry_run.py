"""``aio-train -m ...`` through the real Hydra + submitit launcher path, with nothing sent to SLURM.

Usage: ``AIO_DRY_RUN_OUT=<file.json> python tests/helpers/slurm_dry_run.py <aio-train arguments>``.
Needs an ``srun`` on PATH (any executable: submitit only checks it exists). submitit's real AutoExecutor is
built and receives the launcher's parameters (so unknown keys fail as they would on a cluster); only
``map_array`` is replaced: it records the parameters, the sbatch script submitit would submit, the jobs'
overrides and a few values of each job's composed config, checks the launcher pickles (that is how it
reaches the compute node), and reports every job as completed.
"""

from __future__ import annotations

import json
import os
import sys

import cloudpickle
import submitit
from hydra.core.utils import JobReturn, JobStatus

RECORD: dict = {"update_parameters": {}}
_update = submitit.AutoExecutor.update_parameters


def update_parameters(self, **kwargs):
    RECORD["update_parameters"].update(kwargs)
    return _update(self, **kwargs)


class _DoneJob:
    def results(self):
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=None)]


def map_array(self, fn, *iterables):
    ex = self._executor
    job_overrides = list(iterables[0])
    jobs = []
    for overrides in job_overrides:
        cfg = fn.hydra_context.config_loader.load_sweep_config(fn.config, list(overrides))
        jobs.append({
            "overrides": list(overrides),
            "run_name": cfg.run_name,
            "checkpoint_every_min": cfg.trainer.checkpoint_every_min,
            "tracking_uri": cfg.logger.get("tracking_uri"),
        })
    RECORD.update(
        cluster=self.cluster,
        folder=str(ex.folder),
        max_num_timeout=ex.max_num_timeout,
        parameters={k: v for k, v in ex.parameters.items()},
        sbatch=ex._make_submission_file_text("<the submitit command>", "<uid>"),
        launcher=type(fn).__name__,
        # what a requeue does: submitit calls fn.checkpoint() and resubmits what it returns
        checkpoint_resubmits=(lambda sub: f"{type(sub).__name__}:{sub.function is fn}")(fn.checkpoint()),
        pickled_bytes=len(cloudpickle.dumps(fn)),
        jobs=jobs,
    )
    with open(os.environ["AIO_DRY_RUN_OUT"], "w") as f:
        json.dump(RECORD, f, indent=1, default=str)
    return [_DoneJob() for _ in job_overrides]


submitit.AutoExecutor.update_parameters = update_parameters
submitit.AutoExecutor.map_array = map_array

if __name__ == "__main__":
    from aio.cli.train import main

    sys.argv = ["aio-train", *sys.argv[1:]]
    main()
