"""Everything around the networks, without Qt: data, inference, training, fine-tuning, scoring.

Sub-packages by job, importing only downward (``tests/training/test_package_layout.py``):

- ``data``: readers, cases, slices, augmentation, intensity normalisation, physical scale,
  the CT phantom;
- ``inference``: ``predict_volume`` / ``SliceInferer``, ``open_model``, post-processing, scan
  checks, model descriptions, slice uncertainty (imports ``data``);
- ``evaluation``: ``evaluate``, Dice/HD95, measurements, plan metrics (imports ``inference``,
  ``data``);
- ``fitting``: ``prepare_run``, ``Trainer``, ``fit``, losses, presets, run folders, DDP
  (imports ``evaluation``, ``inference``, ``data``);
- ``finetuning``: ``run_finetune`` and its child process, class outcomes, the annotation
  store's volumes (imports all of the above);
- ``commands`` and ``cli``: the ``l2gnet`` command line, on top.

Entry points: ``training.inference.predict_volume`` / ``SliceInferer``,
``training.evaluation.evaluate``, ``training.fitting.prepare_run`` / ``Trainer`` / ``fit``,
``training.finetuning.run_finetune``. Reading and writing scans lives in the torch-free
``scan_io`` package (docs/design.md "Packages and the direction of imports").
"""
