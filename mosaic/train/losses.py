"""The ReID objective of the strong ViT baselines, plus the learned router's attribute loss.

``total = id_weight * CE_ls(bn_logits, class) + triplet_weight * TripletHard(features, class)
+ attribute_weight * mean_g CE(attr_logits_g, state_g)``

* ID loss: cross-entropy with label smoothing (Szegedy et al. 2016) on the BNNeck classifier's
  logits (Luo et al., "Bag of Tricks", 2019).
* Triplet loss with batch-hard mining (Hermans et al. 2017) on the features *before* the BNNeck,
  Euclidean distance, margin 0.3 (or the soft margin when ``margin is None``).
* Attribute loss: per group cross-entropy of the learned router's predictions against the
  annotated state; images whose group is missing (``-1``) do not count
  (:func:`mosaic.model.routers.attribute_loss`, shared with the model).
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.model.routers import attribute_loss
from mosaic.train.config import LossConfig


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """``(N, D) -> (N, N)`` Euclidean distances, numerically safe at zero."""
    sq = x.pow(2).sum(dim=1, keepdim=True)
    d2 = (sq + sq.t() - 2.0 * (x @ x.t())).clamp_min(1e-12)
    return d2.sqrt()


class BatchHardTripletLoss(nn.Module):
    """Hardest positive and hardest negative per anchor; mean over anchors.

    ``margin=None`` uses the soft margin ``softplus(d_ap - d_an)``.
    """

    def __init__(self, margin: float | None = 0.3):
        super().__init__()
        self.margin = margin

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_euclidean(features.float())
        same = labels[:, None] == labels[None, :]
        # Hardest positive: largest distance among same-label pairs (the anchor itself is 0).
        d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
        # Hardest negative: smallest distance among different-label pairs.
        d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
        if self.margin is None:
            return F.softplus(d_ap - d_an).mean()
        return F.relu(d_ap - d_an + self.margin).mean()


@dataclass
class LossTerms:
    total: torch.Tensor
    parts: dict[str, torch.Tensor]  # detached components, for logging


class ReIDLoss(nn.Module):
    """Weighted sum of the ID, triplet and (when present) attribute losses."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config
        self.triplet = BatchHardTripletLoss(config.triplet_margin)

    def forward(self, output, labels: torch.Tensor, states: torch.Tensor | None = None) -> LossTerms:
        """``output`` is a :class:`mosaic.model.ModelOutput` (features, bn_features, logits, attr_logits)."""
        cfg = self.config
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=labels.device)
        if cfg.id_weight:
            parts["id"] = F.cross_entropy(output.logits.float(), labels, label_smoothing=cfg.label_smoothing)
            total = total + cfg.id_weight * parts["id"]
        if cfg.triplet_weight:
            parts["triplet"] = self.triplet(output.features, labels)
            total = total + cfg.triplet_weight * parts["triplet"]
        attr_logits = getattr(output, "attr_logits", None)
        if cfg.attribute_weight and attr_logits is not None and states is not None:
            parts["attribute"] = attribute_loss(attr_logits, states)
            total = total + cfg.attribute_weight * parts["attribute"]
        return LossTerms(total=total, parts={k: v.detach() for k, v in parts.items()})
