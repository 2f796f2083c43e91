"""Metrics of sample quality and likelihood baselines.

* :mod:`jaxdiff.metrics.fid`: the Fréchet Inception Distance, from
  :mod:`jaxdiff.metrics.frechet` (feature statistics, the Fréchet distance) and
  :mod:`jaxdiff.metrics.inception` (Inception-v3 in Flax, its standard weights).
* :mod:`jaxdiff.metrics.digits`: a download-free digits Fréchet distance and Inception-Score
  figure from a small classifier trained on the digits train split; the digits split itself.
* :mod:`jaxdiff.metrics.pixel_baseline`: the independent-pixel categorical model's bits/dim.
* :mod:`jaxdiff.metrics.diversity`: precision and recall in a feature space (Kynkäänniemi et
  al. 2019), near-copies of the training set, class-histogram entropy, 2-D mode statistics.
* :mod:`jaxdiff.metrics.batching`: running a jitted function over a dataset, sharded over
  devices.
"""

from jaxdiff.metrics import batching as batching
from jaxdiff.metrics import digits as digits
from jaxdiff.metrics import diversity as diversity
from jaxdiff.metrics import fid as fid
from jaxdiff.metrics import frechet as frechet
from jaxdiff.metrics import inception as inception
from jaxdiff.metrics import pixel_baseline as pixel_baseline
from jaxdiff.metrics.batching import map_batches as map_batches
from jaxdiff.metrics.frechet import Statistics as Statistics
from jaxdiff.metrics.frechet import feature_statistics as feature_statistics
from jaxdiff.metrics.frechet import frechet_distance as frechet_distance
from jaxdiff.metrics.pixel_baseline import fit_pixel_categoricals as fit_pixel_categoricals
from jaxdiff.metrics.pixel_baseline import pixel_nll_bpd as pixel_nll_bpd
