"""aio-data and the dataset presets through Hydra's compose API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore

from aio.cli.data import compose_dataset, main
from aio.data.config import DatasetConfig
from aio.data.fixtures import make_aio_tree
from aio.paths import CONF_DIR

PRESETS = ["synthetic", "synthetic_aio3", "synthetic_aio5", "synthetic_cdd11", "aio3", "aio5", "cdd11"]


@pytest.fixture
def conf_dir(tmp_path) -> Path:
    """A primary config with just the dataset group (independent of the other groups)."""
    ConfigStore.instance().store(group="dataset", name="base_dataset", node=DatasetConfig)
    d = tmp_path / "conf"
    shutil.copytree(CONF_DIR / "dataset", d / "dataset")
    (d / "train.yaml").write_text("defaults:\n  - dataset: synthetic\n  - _self_\n")
    return d


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose(conf_dir, preset):
    cfg = compose_dataset([f"dataset={preset}"], config_dir=conf_dir)
    assert cfg.name == preset
    assert cfg.batch_size >= 1 and cfg.patch_size >= 32 and cfg.num_workers >= 0
    assert cfg.kind in ("synthetic", "aio", "cdd11")


def test_default_is_synthetic(conf_dir):
    assert compose_dataset([], config_dir=conf_dir).kind == "synthetic"


def test_misspelt_key_rejected(conf_dir):
    (conf_dir / "dataset" / "typo.yaml").write_text("defaults:\n  - base_dataset\n  - _self_\npatch_sise: 3\n")
    with pytest.raises(Exception, match="patch_sise"):
        compose_dataset(["dataset=typo"], config_dir=conf_dir)
    with pytest.raises(ValueError, match=r"dataset.bacth_size.*did you mean `dataset.batch_size`"):
        compose_dataset(["dataset.bacth_size=3"], config_dir=conf_dir)


def test_check_exit_codes(conf_dir, tmp_path, capsys):
    good = make_aio_tree(tmp_path / "good")
    assert main(["check", "dataset=aio3", f"dataset.root={good}"], config_dir=conf_dir) == 0
    out = capsys.readouterr().out
    assert "BSD68_s50" in out and "derain" in out and "OK" in out
    bad = make_aio_tree(tmp_path / "bad", broken=True)
    assert main(["check", "dataset=aio5", f"dataset.root={bad}"], config_dir=conf_dir) == 1
    out = capsys.readouterr().out
    assert "rain-4.png" in out and "corrupt.png" in out and "x3.png" in out
    assert main(["check", "dataset=aio3"], config_dir=conf_dir) == 1
    assert "dataset.root" in capsys.readouterr().out
    assert main(["check"], config_dir=conf_dir) == 0  # the default synthetic preset
    assert main(["check", "dataset=nope"], config_dir=conf_dir) == 2


def test_preview(conf_dir, tmp_path):
    from aio.data.images import read_image

    out = tmp_path / "grid.png"
    assert main(["preview", "dataset=synthetic", "dataset.patch_size=32", f"out={out}", "n=2"],
                config_dir=conf_dir) == 0
    img = read_image(out)
    assert img.shape[0] == 3 and img.shape[1] >= 5 * 32


def test_presets_compose_with_train():
    """The real primary config (``train``) composes every preset."""
    for preset in ("synthetic", "aio3", "folder"):
        assert compose_dataset([f"dataset={preset}"]).name == preset
