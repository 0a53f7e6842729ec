"""Data: reading and validating labelled frames, reference-data generation, periodic graphs,
padded batches, splits, statistics, cell geometry and the liquid-ammonia systems."""

from legato_jax.data.ammonia import (
    ammonia_box, bonded_nitrogen, liquid_ammonia, molecules_intact, random_ammonia_packing, set_density, tiled_ammonia_packing,
)
from legato_jax.data.batching import BatchLoader, PaddingStats, bucket
from legato_jax.data.cell import is_orthorhombic, perpendicular_widths
from legato_jax.data.graph import (
    Batch, FrameGraph, Graph, Targets, TypeMap, atoms_to_graph, collate, edge_vectors, frame_graph,
)
from legato_jax.data.io import Frame, LabelKeys, check_min_distance, frame_from_atoms, read_frames, read_images
from legato_jax.data.neighbors import neighbor_list
from legato_jax.data.split import block_split, read_split
from legato_jax.data.stats import dataset_statistics

__all__ = [
    "Batch", "BatchLoader", "Frame", "FrameGraph", "Graph", "LabelKeys", "PaddingStats", "Targets",
    "TypeMap", "ammonia_box", "atoms_to_graph", "block_split", "bonded_nitrogen", "bucket", "check_min_distance", "collate",
    "dataset_statistics", "edge_vectors", "frame_from_atoms", "frame_graph", "is_orthorhombic",
    "liquid_ammonia", "molecules_intact", "neighbor_list", "perpendicular_widths", "random_ammonia_packing",
    "read_frames", "read_images", "read_split", "set_density", "tiled_ammonia_packing",
]
