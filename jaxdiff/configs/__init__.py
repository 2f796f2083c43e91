"""The shipped experiment configs (``ml_collections`` files), found by name by
``jaxdiff train --config NAME`` also from an installed wheel; ``configs/`` at the top of a
source checkout is a link to this folder."""
