"""Data: reading and validating labelled frames, reference-data generation, periodic graphs,
padded batches, splits and statistics."""

from legato_jax.data.batching import BatchLoader, PaddingStats, bucket
from legato_jax.data.graph import Batch, FrameGraph, Graph, Targets, TypeMap, collate, edge_vectors, frame_graph
from legato_jax.data.io import Frame, LabelKeys, frame_from_atoms, read_frames
from legato_jax.data.neighbors import neighbor_list
from legato_jax.data.split import block_split, read_split
from legato_jax.data.stats import dataset_statistics

__all__ = [
    "Batch", "BatchLoader", "Frame", "FrameGraph", "Graph", "LabelKeys", "PaddingStats", "Targets",
    "TypeMap", "block_split", "bucket", "collate", "dataset_statistics", "edge_vectors",
    "frame_from_atoms", "frame_graph", "neighbor_list", "read_frames", "read_split",
]
