"""Training and evaluation tooling for SSFNet, in the style of torchvision's segmentation references.

- ``python -m train.train``: train from scratch or from a checkpoint (single process, or
  multi-GPU / multi-node with ``torchrun``); :func:`train.train.run_training` takes a
  :class:`train.config.TrainConfig`, so other entry points (fine-tuning) are a few lines on top.
- ``python -m train.evaluate``: score a checkpoint (single-scale or multi-scale + flip).
- ``python -m train.bench``: latency, throughput, FLOPs and weight size against DeepLabV3.
- ``python -m train.pack``: compact, size-limited training packs for machines with little data.
"""
