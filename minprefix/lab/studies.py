"""The rows and studies of `minprefix compare`, named once: `compare` runs them, `report` reads them back."""

from .. import methods
from ..methods import METHODS

INIT_STUDY = (methods.SOFT.name, methods.PREFIX.name)  # the direct methods whose initialization is studied
SOFT_INITS = ("random", "vocab", "text")
VARIANTS = {METHODS[m].label: m for m in METHODS}  # a row of the main table -> its method (at its default init)
SOFT_LABEL, PREFIX_MLP_LABEL, PREFIX_LABEL, FULL_LABEL = (  # rows of the main table: methods' labels, not methods
    m.label for m in (methods.SOFT, methods.PREFIX_MLP, methods.PREFIX, methods.FULL))
SHIFT_VARIANTS = tuple(VARIANTS)
