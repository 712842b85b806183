"""Data, losses, metrics, training, fine-tuning, evaluation, batch inference and the CLI (no Qt).

Entry points: ``training.inference.predict_volume`` / ``SliceInferer`` (inference),
``training.run_setup.prepare_run`` and ``training.trainer.Trainer`` (training and fine-tuning),
``training.evaluate.evaluate``. Most modules import torch; reading and writing scans lives in
the torch-free ``scan_io`` package (docs/design.md "Packages and the direction of imports").
"""
