"""Command-line mistakes Hydra lets through are refused before any work starts (issue 17, first block)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aio.config import ConfigError, check_overrides, config_groups

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override,closest", [
    ("experiment=ful", "experiment=full"),      # silently trained plain Restormer
    ("debug=tinyy", "debug=tiny"),             # silently started the 300-step default run
    ("backbone=restormr", "backbone=restormer"),
    ("loss=l2", None),
])
def test_unknown_option_names_valid_ones_and_the_closest(override, closest):
    group, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"^{group}={value}: no such option in conf/{group}/; valid options: ") as e:
        check_overrides([override])
    assert ", ".join(config_groups()[group]) in str(e.value)
    if closest:
        assert f"(did you mean `{closest}`?)" in str(e.value)


def test_unknown_option_in_a_multirun_sweep_list_and_unknown_sweep():
    with pytest.raises(ConfigError, match=r"^sweep=nosuch: no such option in conf/sweep/; valid options: .*\bablation\b"):
        check_overrides(["sweep=nosuch"], multirun=True)
    with pytest.raises(ConfigError, match=r"^experiment=ful: .*did you mean `experiment=full`"):
        check_overrides(["experiment=baseline,ful"], multirun=True)
    check_overrides(["experiment=baseline,full", "sweep=ablation"], multirun=True)  # valid: no error


def test_every_option_of_every_group_is_accepted():
    from aio.config import sweep_app
    from aio.paths import CONF_DIR

    for group, options in config_groups().items():
        for option in options:
            # a sweep file is run by the program its `sweep.app` names (evaluation sweeps: aio-eval)
            app = sweep_app(CONF_DIR, option) if group == "sweep" else "train"
            check_overrides([f"{group}={option}"], multirun=True, config_name=app, prog=f"aio-{app}")


def test_a_sweep_is_refused_by_the_other_program():
    """An evaluation sweep (sweep.app: eval) under aio-train, a training sweep under aio-eval: one line naming
    the command that runs it."""
    with pytest.raises(ConfigError, match=r"^sweep=abair_table5 is a sweep of aio-eval \(sweep.app: eval\): run it "
                                          r"as aio-eval -m sweep=abair_table5 checkpoint=x.pt$"):
        check_overrides(["sweep=abair_table5", "checkpoint=x.pt"], multirun=True)
    with pytest.raises(ConfigError, match=r"^sweep=ablation is a sweep of aio-train .* aio-train -m sweep=ablation$"):
        check_overrides(["sweep=ablation"], multirun=True, config_name="eval", prog="aio-eval")
    with pytest.raises(ConfigError, match=r"selects a sweep .* aio-eval -m sweep=abair_table1 checkpoint=x.pt$"):
        check_overrides(["sweep=abair_table1", "checkpoint=x.pt"], config_name="eval", prog="aio-eval")


def test_sweep_without_multirun_shows_the_command():
    with pytest.raises(ConfigError, match=r"sweep=ablation selects a sweep .* aio-train -m sweep=ablation scale=tiny$"):
        check_overrides(["sweep=ablation", "scale=tiny"])


@pytest.mark.parametrize("override,hint", [
    ("+trainer.max_step=5", "trainer.max_steps"),
    ("trainer.ema.decy=0.9", "trainer.ema.decay"),
    ("+dataset.patch=64", "dataset.patch_size"),
    ("++dataset.val.crops=2", "dataset.val.crops_per_task"),
])
def test_unknown_key_under_a_schema_is_refused_with_a_hint(override, hint):
    with pytest.raises(ConfigError, match=rf"is not a key of the .* schema, so it would be ignored \(did you mean `{hint}`\?\)"):
        check_overrides([override])


def test_free_form_nodes_below_a_schema_stay_open():
    check_overrides(["+dataset.recipes.my_task=[]", "+dataset.repeat.derain=2", "trainer.max_steps=5",
                     "+dataset.test_sets.mine.task=derain"])


def test_launcher_settings_under_the_basic_launcher_point_to_the_parallel_launchers():
    with pytest.raises(ConfigError, match=r"hydra.launcher.n_jobs=2: launcher=local is Hydra's basic launcher.*"
                                          r"launcher=joblib hydra.launcher.n_jobs=2 .*launcher=submitit_local"):
        check_overrides(["hydra.launcher.n_jobs=2"], multirun=True)
    check_overrides(["launcher=submitit_local", "hydra.launcher.timeout_min=5"], multirun=True)
    check_overrides(["launcher=joblib", "hydra.launcher.n_jobs=3"], multirun=True)


def _cli(module: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, AIO_OUTPUTS=str(tmp_path / "outputs"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_console_scripts_refuse_before_any_work(tmp_path):
    r = _cli("aio.cli.train", "experiment=ful", "trainer.device=cpu", tmp_path=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "aio-train: error: experiment=ful: no such option in conf/experiment/; valid options: "
        + ", ".join(config_groups()["experiment"]) + " (did you mean `experiment=full`?)"]
    r = _cli("aio.cli.train", "sweep=ablation", tmp_path=tmp_path)
    assert r.returncode == 2 and "aio-train -m sweep=ablation" in r.stderr
    assert not (tmp_path / "outputs").exists()  # nothing was started, nothing was written
    r = _cli("aio.cli.eval", "checkpoint=x.pt", "dataset=aio33", tmp_path=tmp_path)
    assert r.returncode == 2 and "did you mean `dataset=aio3`" in r.stderr


def test_aio_model_summary_refuses_a_misspelt_experiment(capsys):
    from aio.cli.model import main

    assert main(["summary", "experiment=ful"]) == 2
    assert "did you mean `experiment=full`" in capsys.readouterr().err
