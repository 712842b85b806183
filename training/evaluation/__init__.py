"""Evaluation: score segmentations against labels, measure them, and look into the plans.

- ``scoring``: ``evaluate`` (segment each case and score it), ``format_table``,
  ``write_report``;
- ``metrics``: Dice and HD95 per class (``score_case``, ``summarize``), the papers' protocol
  and the clinical one;
- ``measure``: volumes per class and cardiac indices (``l2gnet measure``);
- ``plan_metrics``: information measures on L2GNet's transport plans;
- ``postprocess_choice``: whether the largest-component clean-up helps, per class.

Re-exported lazily (``lazy_loader``). Imports: ``training.data``, ``training.inference``.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "scoring": ["evaluate", "format_table", "write_report"],
        "metrics": ["dice", "hd95", "score_case", "summarize"],
        "measure": ["cardiac_indices", "class_volumes", "scan_voxel_ml"],
        "postprocess_choice": ["choose_largest_component"],
    },
)
