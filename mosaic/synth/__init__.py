"""The synthetic world: procedurally drawn pedestrians in the exact Market-1501 layout.

    >>> from mosaic.synth import WorldConfig, synthesize
    >>> synthesize("runs/world", WorldConfig(n_ids=300, images_per_id=16, seed=0))

The world holds ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with Market-1501
file names, a ``market_attribute.mat`` in the structure of Lin et al.'s annotations (so the
real loaders read it unchanged) and ``world.json`` with the seed and every knob. Attributes are
visible in the pixels and follow Market-1501's frequencies; identities also differ in detail
that no attribute describes; cameras differ in light, blur, scale, position and background.
"""

from mosaic.synth.config import GROUP_STATES, GROUPS, WorldConfig
from mosaic.synth.world import synthesize

__all__ = ["GROUPS", "GROUP_STATES", "WorldConfig", "synthesize"]
