"""Fitting: train a segmenter on slices (``l2gnet train``, and the engine under fine-tuning).

- ``run_setup``: ``prepare_run``, everything a run needs, checked before any work starts;
- ``trainer``: ``Trainer`` and ``TrainConfig`` (the epochs, validation, checkpoints);
- ``one_call``: ``fit``, the same in one call;
- ``losses``, ``presets`` (model and loss presets), ``run_state`` (resumable run folders),
  ``distributed`` (torchrun/DDP), ``new_classes`` (growing a model by classes, shared by
  ``l2gnet train --from`` and fine-tuning).

Re-exported lazily (``lazy_loader``). Imports: ``training.data``, ``training.inference``,
``training.evaluation``.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "one_call": ["fit"],
        "run_setup": ["RunSetup", "prepare_run"],
        "trainer": ["FitResult", "LossNotFinite", "TrainConfig", "TrainEvent", "Trainer",
                    "seed_everything", "validate"],
    },
)
