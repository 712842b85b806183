"""Reading and writing scans (NIfTI now, DICOM next) without importing torch.

The napari reader and writer, the CLI and training all read and write scans through this
package. It imports numpy, nibabel and the standard library only, so opening a scan in
napari never loads torch (and with it triton, whose LLVM crashes next to Mesa's OpenGL).
A test imports every module here in a fresh interpreter and checks that torch stays out.
"""
