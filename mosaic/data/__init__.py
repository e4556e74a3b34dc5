"""Datasets and their identity attributes, as one image table per dataset.

    >>> from mosaic.data import load_dataset
    >>> ds = load_dataset("Market-1501-v15.09.15")      # finds market_attribute.mat beside it
    >>> ds.split("query")[["path", "pid", "camid", "upcolour"]]
    >>> ds.schema.group("upcolour").states

Formats are registered by name in ``FORMATS``: ``market1501`` and ``dukemtmc`` (the folder
layouts, with the Lin et al. attribute files) and ``manifest`` (a CSV plus a schema YAML).
See ``docs/datasets.md``.
"""

from mosaic.data.attributes import AttributeTable, read_attribute_file
from mosaic.data.checks import DataReport, check_dataset, coverage, split_summary, state_counts
from mosaic.data.dataset import SPLITS, Finding, ReIDDataset
from mosaic.data.folders import FOLDER_LAYOUTS, FolderLayout
from mosaic.data.loading import FORMATS, DatasetFormat, detect_format, load_dataset, register_format
from mosaic.data.manifest import read_manifest, write_manifest
from mosaic.data.mapping import AttributeMapping, load_mapping

__all__ = [
    "AttributeMapping",
    "AttributeTable",
    "DataReport",
    "DatasetFormat",
    "FOLDER_LAYOUTS",
    "FORMATS",
    "Finding",
    "FolderLayout",
    "ReIDDataset",
    "SPLITS",
    "check_dataset",
    "coverage",
    "detect_format",
    "load_dataset",
    "load_mapping",
    "read_attribute_file",
    "read_manifest",
    "register_format",
    "split_summary",
    "state_counts",
    "write_manifest",
]
