"""Data: folders of images in, uint8 arrays and training batches out.

    load_folder(path, size)   -> ImageSet   any folder a user points --data at
    default_dataset(size)     -> ImageSet   procedural cartoon faces (no folder needed)
    BatchSampler(images, B)   .next_batch() -> (float32 (B, 3, H, W) in [-1, 1], labels)
"""
from minigan.data.folder import DataError, DataWarning, ImageSet, load_folder
from minigan.data.procedural import default_dataset, make_faces
from minigan.data.sampler import BatchSampler

__all__ = ["BatchSampler", "DataError", "DataWarning", "ImageSet", "default_dataset",
           "load_folder", "make_faces"]
