"""Research workflows built from the library's parts (issue 11).

* :mod:`jaxcontext.workflows.scaling` -- scaling laws: encoders of growing size against the exact
  contexture (alignment, mutual kNN, probe error of learned and exact encoders) over seeds;
* :mod:`jaxcontext.workflows.usefulness` -- context usefulness without a downstream task: many
  contexts per real data set, their exact spectra, ``tau`` and its arg-min ``d``, the probe error of
  the exact encoder, and the correlation between the two (the paper's Table 1 protocol);
* :mod:`jaxcontext.workflows.mixing` -- contexts too strong and too weak, mixed by convolution,
  convex combination and concatenation, before and after.

The scripts under ``scripts/`` only parse flags and call these modules; each module returns
JSON-serialisable records and can draw its own figures (matplotlib, optional).
"""

from . import mixing, scaling, usefulness

__all__ = ["mixing", "scaling", "usefulness"]
