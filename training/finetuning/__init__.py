"""Fine-tuning on a user's corrections (the Fine-tune panel and ``l2gnet finetune``).

- ``finetune``: ``run_finetune(checkpoint, [CorrectedVolume], FinetuneSettings(), out_dir)``
  -> ``FinetuneReport``;
- ``process``: ``FinetuneProcess``, the same run in a child process the panel can stop;
- ``class_outcomes``: per painted class, was it learned;
- ``coverage``: where the taught model labels slices far beyond the corrected ones;
- ``seen_slices``: which slices of which scans a taught model was taught on;
- ``next_slices``: the slices to correct next (the panel's *Where to correct next* list);
- ``store_volumes``: the annotation store's cases as fine-tuning volumes.

Re-exported lazily (``lazy_loader``; the panel imports torch-free parts on its main thread).
Imports: ``training.data``, ``training.inference``, ``training.evaluation``,
``training.fitting``.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "finetune": ["CorrectedVolume", "FinetuneReport", "FinetuneSettings", "run_finetune"],
        "process": ["FinetuneJob", "FinetuneProcess"],
    },
)
