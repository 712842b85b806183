"""Reading and writing scans (NIfTI, DICOM series, DICOM SEG) without importing torch.

The napari reader and writer, the CLI and training all read and write scans through this
package. It imports numpy, nibabel, pydicom and highdicom (the DICOM ones only when a DICOM
scan is read or a SEG written) and the standard library, so opening a scan in napari never
loads torch (and with it triton, whose LLVM crashes next to Mesa's OpenGL). A test imports
every module here in a fresh interpreter and checks that torch stays out.

The entry points, for any caller:

- `load_scan(path, labels=False)`: a NIfTI file or a DICOM series (folder or one file) as a
  `ScanVolume` in display layout (``.data`` (slices, rows, columns), ``.spacing`` in mm),
  checked (size, colour, non-finite voxels, label values).
- `save_labels_like(path, labels, source, overwrite=False, class_names=None, algorithm=None)`:
  labels in display layout back on the source's grid; NIfTI for ``.nii``/``.nii.gz``, DICOM
  SEG for ``.dcm``.
- `find_scans(path)`: the scans in a file, a folder, or a study folder of series folders.
"""

from scan_io.volume import ScanVolume, find_scans, load_scan, save_labels_like

__all__ = ["ScanVolume", "find_scans", "load_scan", "save_labels_like"]
