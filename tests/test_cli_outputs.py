"""What the small CLIs print and draw (issue 17): aio-model list, aio-data preview."""

from __future__ import annotations

import numpy as np

from aio.paths import CONF_DIR


def test_aio_model_list_names_every_backbone_option(capsys):
    from aio.cli.model import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    options = {p.stem for p in (CONF_DIR / "backbone").glob("*.yaml")}
    assert "nafnet_gopro" in rows and options <= rows


def test_aio_data_preview_labels_rows_and_columns(tmp_path, capsys):
    import torch

    from aio.cli.data import labelled_grid, main

    rows = [[{"input": torch.zeros(3, 24, 24), "target": torch.ones(3, 24, 24)}] * 2] * 3
    plain = labelled_grid(rows, ["", "", ""], 24)
    named = labelled_grid(rows, ["denoise_15", "derain", "dehaze"], 24)
    a = np.asarray(named.convert("L"), dtype=np.int32)
    # a header band with the column names above the cells, and a left band with the row names
    head = a[:14, -2 * 24 - 4:]
    assert (head < 128).any() and named.width > plain.width  # "degraded" / "clean" drawn; label column added
    assert (a[16 + 8:16 + 16, :named.width - plain.width] < 128).any()  # "denoise_15" written left of row 1
    out = tmp_path / "grid.png"
    assert main(["preview", "dataset.patch_size=32", "dataset.tasks=[derain,dehaze]", f"out={out}", "n=1"]) == 0
    assert "one row per degradation (derain, dehaze), columns of (degraded, clean) pairs" in capsys.readouterr().out
