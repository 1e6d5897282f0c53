"""ABAIR training data: single degradations, region-wise CutMix and whole-image composites, with per-pixel
degradation targets for the segmentation head and per-image targets for the degradation estimator.

A synthetic preset whose ``dataset.abair`` node is not empty builds :class:`ABAIRTrainDataset` (see
``aio.data.build_train_dataset``). Keys of ``dataset.abair`` (relative weights of the three item kinds, the
rest optional):

  ``single`` (1.0): the whole crop degraded by its task's recipe;
  ``cutmix`` (0.0): :func:`aio.data.degradations.region_mix` over all tasks' recipes (different degradations
  in different regions, the paper's Degradation CutMix);
  ``composite`` (0.0): the whole crop degraded by ``composite_parts`` (2) different tasks' recipes applied
  together in physical order (e.g. haze then noise);
  ``boxes`` (2): CutMix rectangles per crop;
  ``fresh`` (true): new crops and degradations every epoch; ``false`` draws every item once and repeats it
  each epoch, a fixed finite set of pairs: our stand-in for "IR datasets only" in the paper's Table 6.

Every item has ``deg_map [K, H, W]`` (per-pixel probability of each of the K ``dataset.tasks``: one-hot for
single and CutMix pixels, ``1/parts`` on each part of a composite) and ``deg_prob [K]`` (its spatial mean:
the estimator's target). ``task`` is the most frequent degradation of the item.
"""

from __future__ import annotations

import torch

from . import degradations as D
from .synthetic import SyntheticTrainDataset
from .transforms import generator_for

KINDS = ("single", "cutmix", "composite")


def abair_options(cfg) -> dict:
    """``dataset.abair`` with defaults filled in; one-line errors for bad values."""
    raw = dict(cfg.get("abair") or {})
    opts = {"single": 1.0, "cutmix": 0.0, "composite": 0.0, "composite_parts": 2, "boxes": 2, "fresh": True}
    unknown = set(raw) - set(opts)
    if unknown:
        raise ValueError(f"dataset.abair has unknown key(s) {sorted(unknown)}; valid: {', '.join(opts)}")
    opts.update(raw)
    weights = [float(opts[k]) for k in KINDS]
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"dataset.abair.single/cutmix/composite={weights} must be >= 0 with a positive sum")
    if int(opts["composite_parts"]) < 2:
        raise ValueError(f"dataset.abair.composite_parts={opts['composite_parts']} must be >= 2")
    return opts


class ABAIRTrainDataset(SyntheticTrainDataset):
    """Synthetic crops as single, CutMix or composite degradations with their degradation maps."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.opts = abair_options(cfg)
        self.mix_prob = 0.0  # the base class's own region mixing is replaced by the kinds above
        k = len(self.task_names)
        w = torch.tensor([float(self.opts[n]) for n in KINDS])
        if k < 2:
            w[1:] = 0.0  # CutMix / composites need two degradations
            if w.sum() == 0:
                w[0] = 1.0
        self.kind_probs = (w / w.sum()).tolist()
        if k < int(self.opts["composite_parts"]) and self.kind_probs[2] > 0:
            raise ValueError(f"dataset.abair.composite_parts={self.opts['composite_parts']} needs as many "
                             f"dataset.tasks (got {k})")

    def _pick_kind(self, g) -> str:
        u = float(torch.rand((), generator=g))
        acc = 0.0
        for name, p in zip(KINDS, self.kind_probs):
            acc += p
            if u < acc:
                return name
        return KINDS[0]

    def _get_item(self, index: int, seed_offset: int) -> dict:
        if not self.opts["fresh"]:
            seed_offset = 0
        task = self.task_of(index)
        g = generator_for("abair", self.seed, index, int(seed_offset))
        clean, img_name = self._clean_crop(g)
        k = len(self.task_names)
        kind = self._pick_kind(g)
        x = clean[None]
        if kind == "cutmix":
            degraded, label = D.region_mix(x, self.recipes, g, boxes=int(self.opts["boxes"]))
            deg_map = torch.nn.functional.one_hot(label[0], k).permute(2, 0, 1).float()
        elif kind == "composite":
            n = int(self.opts["composite_parts"])
            others = [t for t in torch.randperm(k, generator=g).tolist() if t != task][: n - 1]
            chosen = [task] + others
            recipe = D.Composite([p for t in chosen for p in self.recipes[t].parts])
            degraded = recipe(x, g)
            deg_map = torch.zeros(k, *clean.shape[-2:])
            deg_map[chosen] = 1.0 / n
        else:
            degraded = self.recipes[task](x, g)
            deg_map = torch.zeros(k, *clean.shape[-2:])
            deg_map[task] = 1.0
        deg_prob = deg_map.mean(dim=(1, 2))
        return {"input": degraded[0].contiguous(), "target": clean, "task": int(deg_prob.argmax()),
                "name": f"{kind}/{self.task_names[task]}/{img_name}/{index}", "deg_map": deg_map,
                "deg_prob": deg_prob}
