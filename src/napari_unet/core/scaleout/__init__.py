"""Scale-out prediction: large 2D zarr images chunk by chunk, and many files, locally or on dask.

- :mod:`.zarr_image`: one large image streamed in four passes over a grid of chunks
  (:mod:`.grid`), each pass one task per chunk (:mod:`.chunks`), written to staged zarr stores
  (:mod:`._stores`) and published atomically;
- :mod:`.files`: a folder of images, one task per file, the labelling of one file overlapping
  the network's work on the next;
- :mod:`._models`, :mod:`._runner`: the model a task predicts with, and tasks run in a loop or
  on a ``dask.distributed`` client.
"""

from .files import (
    FileMaps,
    file_maps,
    output_path,
    predict_file,
    predict_files,
    probability_path,
    write_file_labels,
)
from .grid import DEFAULT_LABEL_HALO, ChunkGrid, chunk_memory_bytes
from .zarr_image import estimate_norm_range, predict_zarr

__all__ = [
    "DEFAULT_LABEL_HALO",
    "ChunkGrid",
    "FileMaps",
    "chunk_memory_bytes",
    "estimate_norm_range",
    "file_maps",
    "output_path",
    "predict_file",
    "predict_files",
    "predict_zarr",
    "probability_path",
    "write_file_labels",
]
