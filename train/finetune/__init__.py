"""Fine-tuning a checkpoint on saved corrections (``python -m train.finetune``).

- :mod:`.run`: the command and :func:`~train.finetune.run.run_finetune`, the four phases of a fine-tune.
- :mod:`.config`: :class:`~train.finetune.config.FinetuneConfig` and the trainer's fine-tune defaults.
- :mod:`.data`: the plan (which corrections are trained on, held out, the original sources).
- :mod:`.score`: scoring before and after; :mod:`.publish`: the new checkpoint and the report.
- :mod:`.report`: :class:`~train.finetune.report.FinetuneReport`, what a fine-tune returns (``report.json``).
- :mod:`.status`, :mod:`.defaults`, :mod:`.budget`: what the app reads and offers; they load no
  torch (nor does :mod:`.report`), and neither does this file, so that the app can import them without
  the trainer.
"""
