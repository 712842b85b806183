"""``l2gnet predict IN --checkpoint C --out OUT``: segment scans on their own grid.

Inputs are NIfTI files, DICOM series folders (or one of their files) and folders of either
(``scan_io.find_scans``); outputs are NIfTI label maps, or DICOM SEG objects for DICOM
input (``--out X.dcm`` for one series, ``--format seg`` for a folder of them;
``scan_io.save_labels_like``), which go back to a PACS beside the series they segment.

Everything that can be checked is checked before the first scan (inputs exist, outputs are
new or ``--overwrite`` is given, no output is an input, the output folder is writable, the
device exists, the checkpoint loads). A folder of scans is then processed to the end even when
some scans fail; the failures are listed together at the end and the exit status is 2. Under
``torchrun`` the scans are split across the ranks (``training.fitting.distributed``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import batch_size_arg

if TYPE_CHECKING:
    from ..fitting.distributed import DistContext

OUTPUT_MARK = b"napari-l2gnet labels"
"""Written into the NIfTI header's ``descrip`` of every label map this command writes, so that
a later run over the same folder never takes its own output for a scan."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="segment scans (NIfTI files, DICOM series, or folders of them)",
        description="Segment each input scan slice by slice (axial slices, the way the napari "
        "plugin shows them) and write labels on the input's grid: NIfTI with its affine and "
        "header, or DICOM SEG when --out ends in .dcm (DICOM input). With a folder of scans "
        "(or several inputs), --out is a folder; outputs keep the input names (a DICOM series "
        "becomes SERIES.nii.gz, or SERIES.dcm, a DICOM SEG, with --format seg). "
        "A folder is processed to the end; scans that fail are listed at the end (exit 2). "
        "Under torchrun the scans are split across the ranks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help=".nii/.nii.gz files, DICOM series folders, or "
                   "folders of them")
    p.add_argument("--checkpoint", required=True, help=".safetensors checkpoint")
    p.add_argument("--out", required=True, help="output file (one input: .nii.gz, .nii, or "
                   ".dcm for DICOM SEG) or folder")
    p.add_argument("--no-postprocess", action="store_true",
                   help="keep every connected component (skip the checkpoint's largest-"
                   "component post-processing, chosen on validation)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="auto", type=batch_size_arg,
                   help="slices per batch, or auto (from free GPU memory)")
    p.add_argument("--format", choices=("nifti", "seg"), default=None,
                   help="output format in an output folder: nifti (SERIES.nii.gz) or seg "
                   "(SERIES.dcm, DICOM SEG; DICOM inputs only). Default: nifti, or what "
                   "--out's extension says for one input")
    exists = p.add_mutually_exclusive_group()
    exists.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exists.add_argument("--skip-existing", action="store_true",
                        help="with a folder of scans: keep the outputs that already exist and "
                        "segment only the other scans (a batch rerun after a kill)")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Job:
    """One scan to segment and where its labels go."""

    source: Path
    target: Path


def is_own_output(path: Path) -> bool:
    """True for a label map written by this command: a NIfTI whose header carries
    ``OUTPUT_MARK``, or a folder of DICOM SEG objects written by napari-l2gnet."""
    import nibabel as nib

    if path.is_dir():
        return _is_own_seg_folder(path)
    try:
        descrip = bytes(nib.load(str(path)).header.get("descrip", b"").tobytes())
    except Exception:  # unreadable: not ours; the read proper will report it
        return False
    return descrip.startswith(OUTPUT_MARK)


def _is_own_seg_folder(folder: Path) -> bool:
    """A folder whose DICOM files are all SEG objects napari-l2gnet made (``--format seg``
    output inside the input folder): never a series to segment."""
    import pydicom

    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True,
                                 specific_tags=["Modality", "Manufacturer"])
        except Exception:  # not DICOM (or damaged): the read proper reports it
            return False
        if ds.get("Modality") != "SEG" or ds.get("Manufacturer") != "napari-l2gnet":
            return False
    return bool(files)


def list_inputs(items: list[str]) -> tuple[list[Path], list[Path]]:
    """The scans named (``scan_io.find_scans``: NIfTI files, DICOM series folders, study
    folders of series) and the label maps this command wrote earlier, which are skipped.

    Hidden files (temporaries of an interrupted write start with ".") are never scans.
    """
    from scan_io.volume import find_scans

    files: list[Path] = []
    skipped: list[Path] = []
    for item in items:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"Input {path} does not exist")
        found = find_scans(path)
        if path.is_dir():
            own = [f for f in found if is_own_output(f)]
            skipped += own
            found = [f for f in found if f not in own]
            if not found:
                extra = f" (only {len(own)} earlier l2gnet outputs)" if own else ""
                raise FileNotFoundError(f"No scans (.nii/.nii.gz files or DICOM series) in "
                                        f"{path}{extra}")
        files += found
    return files, skipped


def _target_name(source: Path, fmt: str) -> str:
    """The output's name in an output folder: a NIfTI keeps its name, a DICOM series becomes
    ``<series>.nii.gz`` (``fmt`` "nifti") or ``<series>.dcm`` (``fmt`` "seg")."""
    from scan_io.nifti import is_nifti_path
    from scan_io.volume import scan_name

    if is_nifti_path(source):
        return source.name
    return f"{scan_name(source)}.{'dcm' if fmt == 'seg' else 'nii.gz'}"


def _check_format(fmt: str | None, files: list[Path], out: Path, many: bool) -> None:
    """Refuse, before any work, an output format the inputs or ``--out`` cannot take."""
    from scan_io.nifti import is_nifti_path

    if fmt == "seg":
        nifti = [f for f in files if is_nifti_path(f)]
        if nifti:
            raise ValueError(f"--format seg writes DICOM SEG, which needs DICOM input series; "
                             f"{nifti[0]} is NIfTI: leave NIfTI files out, or drop --format seg")
        if not many and not out.name.lower().endswith(".dcm"):
            raise ValueError(f"--format seg writes DICOM SEG: --out {out} must end in .dcm")
    if fmt == "nifti" and not many and not is_nifti_path(out):
        raise ValueError(f"--format nifti: --out {out} must end in .nii or .nii.gz")


def _source_files(source: Path) -> list[Path]:
    """The files an input consists of (a DICOM series folder: its files)."""
    return [f for f in source.iterdir() if f.is_file()] if source.is_dir() else [source]


def plan(args: argparse.Namespace, announce: bool = True) -> list[Job]:
    """The jobs, with every output checked (exists, is an input, writable) before any work."""
    from scan_io.nifti import is_nifti_path

    from .outputs import check_outputs

    files, skipped = list_inputs(args.inputs)
    for path in skipped if announce else ():
        print(f"skipping {path}: a label map written by l2gnet predict, not a scan",
              file=sys.stderr)
    out = Path(args.out)
    many = len(files) > 1 or Path(args.inputs[0]).is_dir() and files != [Path(args.inputs[0])]
    _check_format(args.format, files, out, many)
    jobs = [Job(f, out / _target_name(f, args.format or "nifti") if many else out)
            for f in files]
    if getattr(args, "skip_existing", False):
        jobs = _skip_existing(jobs, announce)
    check_outputs([j.target for j in jobs], [*(p for f in files for p in _source_files(f)),
                                             args.checkpoint], overwrite=args.overwrite,
                  can_skip=many)
    _check_seg_sources(jobs, announce)
    if not many:
        if out.name.lower().endswith(".dcm"):
            if is_nifti_path(files[0]):
                raise ValueError(f"--out {out}: DICOM SEG needs a DICOM input series; this "
                                 "scan is NIfTI. Write .nii.gz instead")
        elif not is_nifti_path(out):
            raise ValueError(f"--out {out} must end in .nii or .nii.gz (NIfTI labels), or "
                             ".dcm (DICOM SEG, for a DICOM input)")
    return jobs


def _skip_existing(jobs: list[Job], announce: bool) -> list[Job]:
    """``--skip-existing``: the jobs whose output is not there yet. Outputs are written whole
    or not at all (temporary file, then rename), so an existing one is a finished one."""
    todo = []
    for job in jobs:
        if job.target.is_file():
            if announce:
                print(f"skipping {job.source}: {job.target} already exists (--skip-existing)",
                      file=sys.stderr)
        else:
            todo.append(job)
    return todo


def warn_if_label_map(scan, source: Path) -> None:
    """Say so when an input looks like a label map (an earlier output given as the scan):
    segmenting it goes on, since a user may mean it, but the result is not a segmentation
    of a scan."""
    import warnings

    from scan_io.checks import LooksLikeLabelsWarning, label_map_reason

    reason = label_map_reason(scan.data)
    if reason is not None:
        warnings.warn(f"{source} looks like a label map ({reason}), not a scan: segmenting it "
                      "anyway; give the scan itself if that was meant", LooksLikeLabelsWarning,
                      stacklevel=2)


def _check_seg_sources(jobs: list[Job], announce: bool) -> None:
    """Every DICOM series that becomes a SEG can be referenced by one (headers only, before
    any inference); a note for each whose SEG will reference generated UIDs."""
    from scan_io.dicom import check_seg_source, generated_uids_note
    from scan_io.nifti import is_nifti_path

    for job in jobs:
        if job.target.name.lower().endswith(".dcm") and not is_nifti_path(job.source):
            generated = check_seg_source(job.source)
            if generated and announce:
                print(f"l2gnet predict: note: {generated_uids_note(job.source, generated)}",
                      file=sys.stderr)


def segment_file(job: Job, inferer, *, overwrite: bool, checkpoint_name: str = "",
                 show_progress: bool = True) -> Path:
    """Read one scan (``scan_io.load_scan``: display layout), segment it, and write the labels
    on its own grid (``scan_io.save_labels_like``: NIfTI, or DICOM SEG for ``.dcm``)."""
    import dataclasses

    from tqdm import tqdm

    from scan_io.volume import load_scan, save_labels_like

    scan = load_scan(job.source)
    warn_if_label_map(scan, job.source)
    with tqdm(total=scan.data.shape[0], unit="slice", desc=job.source.name, file=sys.stderr,
              disable=not show_progress) as bar:
        pred = inferer(scan.data, progress=lambda done, total: bar.update(done - bar.n),
                       spacing=scan.spacing)
    header = scan.nifti.header.copy()
    header["descrip"] = OUTPUT_MARK
    scan.nifti = dataclasses.replace(scan.nifti, header=header)
    meta = inferer.metadata
    card = meta.resolved_card()
    return save_labels_like(
        job.target, pred.labels, scan, overwrite=overwrite, class_names=list(meta.class_names),
        algorithm={"name": card.display_name or "L2GNet",
                   "checkpoint": checkpoint_name}, class_colors=meta.class_colors)


def _message(err: BaseException) -> str:
    from .outputs import describe

    if isinstance(err, OSError) and err.errno is not None:
        return describe(err)
    if isinstance(err, ValueError | OSError | MemoryError):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err}"


def _prepare(args: argparse.Namespace, device: str, announce: bool):
    from ..inference.model_handle import open_model
    from ..inference.predict import InferenceSettings, SliceInferer, resolve_device

    resolve_device(device)  # an unknown or absent device is refused before any work
    jobs = plan(args, announce)
    handle = open_model(args.checkpoint)
    model, meta = handle.model(), handle.meta
    if model.in_channels not in (1, 3):
        raise ValueError(f"{args.checkpoint} expects {model.in_channels} input channels; "
                         "only grey scans (1 channel, repeated if needed) are supported")
    settings = InferenceSettings(axis=0, device=device, batch_size=args.batch_size,
                                 postprocess=not args.no_postprocess)
    return jobs, SliceInferer(model, meta, settings)


def run(args: argparse.Namespace) -> int:
    from ..fitting.distributed import distributed_session

    with distributed_session(args.device, backend="gloo") as shards:
        return _run(args, shards)


def _run(args: argparse.Namespace, shards: DistContext) -> int:
    device = shards.device_name(args.device)
    single = shards.world_size == 1
    try:
        jobs, inferer = _prepare(args, device, announce=shards.is_main)
        setup_error = None
    except Exception as err:
        if single:
            raise
        jobs, inferer, setup_error = [], None, _message(err)
    if not single:  # every rank stops if any rank could not start (no rank waits forever)
        errors = [e for e in shards.gather(setup_error) if e is not None]
        if errors:
            if shards.is_main:
                print(f"l2gnet predict: error: {errors[0]}", file=sys.stderr)
            return 2
    name = Path(args.checkpoint).name
    for folder in sorted({j.target.parent for j in jobs}):
        folder.mkdir(parents=True, exist_ok=True)
    if single and len(jobs) == 1 and jobs[0].target == Path(args.out):
        print(segment_file(jobs[0], inferer, overwrite=args.overwrite, checkpoint_name=name))
        return 0

    order = {job: i for i, job in enumerate(jobs)}
    written: list[tuple[int, str]] = []
    failures: list[tuple[int, str]] = []
    for job in shards.take(jobs):
        try:
            segment_file(job, inferer, overwrite=args.overwrite, checkpoint_name=name,
                         show_progress=shards.is_main)
            written.append((order[job], str(job.target)))
        except Exception as err:  # one bad scan must not stop the batch; reported below
            failures.append((order[job], f"{job.source}: {_message(err)}"))
    # Every rank's results, in input order (rank 0 reports them all).
    written = sorted(sum(shards.gather(written), []))
    failures = sorted(sum(shards.gather(failures), []))
    if not shards.is_main:
        return 2 if failures else 0
    for _, path in written:
        print(path)
    for _, line in failures:
        print(f"l2gnet predict: error: {line}", file=sys.stderr)
    if failures:
        print(f"l2gnet predict: error: {len(failures)} of {len(jobs)} scans failed (listed "
              f"above); the other {len(jobs) - len(failures)} were written", file=sys.stderr)
        return 2
    return 0
