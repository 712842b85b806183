"""Inference: segment a volume with a checkpoint, and what surrounds it (no Qt).

- ``predict``: ``predict_volume`` / ``iter_predict_volume`` / ``SliceInferer`` (slice by
  slice, batched, out-of-memory fallback), ``load_for_inference``;
- ``model_handle``: ``open_model`` (one handle per checkpoint file, metadata read once);
- ``postprocess``: the largest-component clean-up stored in the checkpoint;
- ``fit_check``: does this scan fit this checkpoint (warnings before, a summary after);
- ``shipped_models``: describe checkpoints for a person choosing one;
- ``uncertainty``: rank slices by the model's entropy (where to correct next).

The names below are re-exported lazily (``lazy_loader``): ``from training.inference import
predict_volume`` works, and importing a torch-free module here (``fit_check``,
``shipped_models``, ``uncertainty``) does not load torch. Imports: ``training.data`` only.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "predict": [
            "DeviceError",
            "Explanation",
            "InferenceSettings",
            "OutOfMemoryFallback",
            "PredictionCancelled",
            "SliceForward",
            "SliceInferer",
            "VolumePrediction",
            "auto_batch_size",
            "is_cpu_out_of_memory",
            "iter_predict_volume",
            "load_for_inference",
            "predict_volume",
            "resolve_device",
            "run_to_end",
        ],
        "model_handle": ["ModelHandle", "open_model"],
    },
)
