"""Every panel's tooltip text, in one place, one class per panel (a namespace, never built).

Written for the person at the viewer: what the control does and what the default means, in
one or two sentences. Texts that depend on a value (a default from ``FinetuneSettings``, the
classes a model chose) are functions.
"""

from __future__ import annotations

from collections.abc import Sequence


class Segment:
    IMAGE = ("The scan to segment: a grey 2-D or 3-D image, or a 4-D cine (segmented frame "
             "by frame)")
    MODEL = "The shipped models (described by their model cards), and files chosen with Browse"
    BROWSE = "Choose a .safetensors checkpoint file"
    CHECKPOINT = "The checkpoint file in use; type a path and press Enter to change it"
    DEVICE = "auto: the GPU when there is one, else the CPU"
    AXIS = "Which array axis holds the slices (default: the axis the viewer is slicing)"
    BATCH = "auto: from free GPU memory (4 on CPU)"
    EXPLAIN = ("Keep the transport plans, bucket assignments and codes, so that the Explain "
               "panel can show them (costs memory on large scans)")
    RUN = "Segment the chosen image with the chosen model; the viewer stays usable meanwhile"
    CANCEL = "Stop after the slice batch in flight; no layer is changed"
    OPTIONS = "Slice axis, batch size and what to keep for Explain"

    @staticmethod
    def postprocess(chosen: Sequence[str]) -> str:
        if not chosen:
            return "This model chose no post-processing"
        return (f"Keep only the largest 3-D component of {', '.join(chosen)}, as chosen on "
                "validation data")


class Explain:
    SEGMENTATION = "A segmentation made with 'keep transport plans and codes' ticked"
    REFERENCE = "Which of the model's q reference sets the plan and buckets are shown for"
    BUCKET = "Which of the t buckets (global tokens) the plan layer shows the transport to"
    SHOW = "Add (or update) the plan, bucket and code layers over the scan"
    TOKENS = "Share of this scan's tokens whose strongest bucket this is"
    VOTES = "The class this bucket's learned vote favours, and that class's share"


class Finetune:
    IMAGE = "The scan the labels were drawn on"
    LABELS = "The labels layer holding your corrections (Segment's output, painted over)"
    ANNOTATED = ("Which slices count as annotated: the ones you painted on (or that differ "
                 "from the model's output), or every slice with some label")
    FORGET = "Forget which slices you painted on this labels layer"
    LR = "AdamW learning rate"
    BATCH = "Slices per training step"
    KEEP = ("Keep what the model knows: when it already agrees with your corrections (Dice "
            ">= 0.5), its own labels on uncorrected slices are mixed in, this many per "
            "corrected slice times that Dice (0: off)")
    INPUT = "The checkpoint to start from (follows the model chosen in Segment)"
    BROWSE_INPUT = "Choose the checkpoint to start from"
    OUTPUT = "Where Accept saves the fine-tuned checkpoint"
    BROWSE_OUTPUT = "Choose where Accept saves the fine-tuned checkpoint"
    OVERWRITE = "Allow the output to be the input checkpoint (it is replaced on Accept)"
    START = "Fine-tune in a separate process; the viewer stays usable"
    STOP = "Stop after the current step and keep the best model so far (press again to end at once)"
    ACCEPT = "Save the fine-tuned checkpoint to the output path; Segment uses it from now on"
    RANK = ("Segment with the input checkpoint and list the slices to correct next: first "
            "slices spread over the scan (nothing corrected yet) or the middle of each range "
            "of slices beyond the corrected (and taught) ones, where the model guesses; then "
            "the slices whose class probabilities are most uncertain")
    PAINTED_ON = "Corrected slices holding the class"
    NEW_CLASSES = ("Label values the model does not have: name them to teach them as new "
                   "classes (the model's own classes are kept)")
    NEW_CLASS_COLOR = "Colour of this class in Segment's output (click to change)"
    STORE_INCLUDE = ("Also train on every scan whose corrections you accepted before, so the "
                     "model keeps what they taught it")
    STORE_SAVE = "Keep this scan, its labels and which slices you corrected, for the next fine-tune"
    STORE_REMOVE = "Delete the selected case from the store (asks first)"
    REFRESH_CHANGES = "Recompute the table from the labels layer as it is now"

    @staticmethod
    def epochs(samples_per_epoch: int) -> str:
        return f"Each epoch shows the corrected slices about {samples_per_epoch} times, augmented"


class Measure:
    LABELS = "The labels layer to measure (follows the layer selected in the layer list)"
    NAMES = ("Names of the label values, background first, for labels opened from a file "
             "(Segment's layers carry their own)")
    ED_LABELS = "End-diastole labels, or a cine's labels (then ED and ES are frames of it)"
    ES_LABELS = "End-systole labels: another labels layer on the same grid"
    ED_FRAME = "End-diastole: by default the frame with the largest LV volume"
    ES_FRAME = "End-systole: by default the frame with the smallest LV volume"
    BASAL_LINKS = ("Click a slice to show it: the ED or ES labels layer (selected, visible) "
                   "or the cine's ED or ES frame")
    COPY = "Copy both tables as tab-separated text, for a report"
    SAVE = "Save both tables as one CSV file"
