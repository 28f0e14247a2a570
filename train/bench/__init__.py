"""Speed measurements.

- ``python -m train.bench`` (:mod:`.speed`): inference and training speed of the variants beside
  torchvision's peers; ``--kernels`` (:mod:`.kernels`): depthwise vs pointwise convolutions.
- :mod:`.timing`: what is measured (model facts, timed calls on CPU and CUDA).
- ``python -m train.bench.parse``: a parse as the app calls it, per runtime and input size.
- ``python -m train.bench.beside``: a parse beside a fine-tune, as the app launches one.
"""
