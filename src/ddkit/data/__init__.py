"""Data: the built-in digits, Fashion-MNIST (:mod:`.fashion_mnist`), image folders and 2-D toy sets
(:mod:`.datasets`, :mod:`.toy`), their splits (:mod:`.splits`) and image pixels in and out
(:mod:`.images`)."""

from .datasets import (
    DEFAULT_FOLDER_IMAGE_SIZE,
    DIGITS_SIZE,
    DIGITS_SPLIT_SEED,
    DIGITS_SPLITS,
    DIGITS_TEST_PER_CLASS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_SIZE,
    DataError,
    Dataset,
    digits_split,
    digits_split_indices,
    load_data,
    load_digits,
    load_fashion_mnist,
    load_image,
    load_image_folder,
)
from .fashion_mnist import FASHION_CLASSES, FASHION_SPLITS, check_fashion_files, fashion_dir, read_idx
from .splits import HOLDOUT_PARTS, RUN_PARTS, holdout_size, holdout_split, load_run_data, split_holdout, split_val, take
from .toy import TOY_NAMES, make_toy, toy_num_classes

__all__ = [
    "DEFAULT_FOLDER_IMAGE_SIZE",
    "DIGITS_SIZE",
    "DIGITS_SPLIT_SEED",
    "DIGITS_SPLITS",
    "DIGITS_TEST_PER_CLASS",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_SIZE",
    "DataError",
    "Dataset",
    "digits_split",
    "digits_split_indices",
    "load_data",
    "load_digits",
    "load_fashion_mnist",
    "FASHION_CLASSES",
    "FASHION_SPLITS",
    "check_fashion_files",
    "fashion_dir",
    "read_idx",
    "load_image",
    "load_image_folder",
    "HOLDOUT_PARTS",
    "RUN_PARTS",
    "holdout_size",
    "holdout_split",
    "load_run_data",
    "split_holdout",
    "split_val",
    "take",
    "TOY_NAMES",
    "make_toy",
    "toy_num_classes",
]
