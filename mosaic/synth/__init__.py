"""The synthetic world: procedurally drawn pedestrians in the exact Market-1501 or DukeMTMC-reID layout.

    >>> from mosaic.synth import WorldConfig, synthesize
    >>> synthesize("runs/world", WorldConfig(n_ids=300, images_per_id=16, seed=0))
    >>> synthesize("runs/duke", WorldConfig(seed=0, layout="dukemtmc"))

The world holds ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with the layout's
file names, its attribute file (``market_attribute.mat`` / ``duke_attribute.mat``) in the
structure of Lin et al.'s annotations (so the real loaders read it unchanged) and ``world.json``
with the seed, every knob and what a reader should find. Attributes are visible in the pixels
and follow the real dataset's frequencies; identities also differ in detail that no attribute
describes; cameras differ in light, blur, scale, position and background. The layouts are the
registry :data:`mosaic.synth.layouts.WORLD_LAYOUTS`.
"""

from mosaic.synth.config import GROUP_STATES, GROUPS, WorldConfig
from mosaic.synth.layouts import WORLD_LAYOUTS, WorldLayout
from mosaic.synth.world import synthesize

__all__ = ["GROUPS", "GROUP_STATES", "WORLD_LAYOUTS", "WorldConfig", "WorldLayout", "synthesize"]
