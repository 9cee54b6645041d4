"""Evaluation data: labelled image sets for classification, captioned image sets for retrieval.

Images are loaded lazily (``ImageSet.load(i)``) so a 10k-image benchmark is never held decoded in memory
all at once; the pipeline's own ``preprocess`` turns each into pixels, which is what makes imported
pretrained checkpoints evaluate correctly (their resize, crop and normalization travel with them).

Sources (``DatasetConfig.kind``):
- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` idx files (``apt-get install dataset-fashion-mnist``).
- ``animal-mnist``: the two gzip pickles inside PyPI ``animal-mnist`` (``pip install --no-deps animal-mnist==0.4``),
  read directly so its tensorflow import never runs.
- ``folders``: ``ROOT/<class name>/*.{png,jpg,...}``, one folder per class (the folder name is the class name).
- ``jsonl``: rows ``{"image": path relative to the file, "captions": [...], "label": "..."}`` such as the emoji
  demo set's ``heldout.jsonl`` (written by ``clipforge data emoji OUT``).
"""

from __future__ import annotations

import abc
import gzip
import importlib.util
import logging
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from clipforge.data.skips import SkipStats
from clipforge.data.sources import Item, Source, list_images, open_source
from clipforge.data.transforms import load_image
from clipforge.errors import UserError

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_HINT = "install it with 'sudo apt-get install dataset-fashion-mnist'"
# The dataset's own class names, in label order (Xiao et al., 2017, table 1).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
ANIMAL_MNIST_HINT = "install it with 'pip install --no-deps animal-mnist==0.4' (no tensorflow needed)"
# Label order of animal-mnist 0.4 (its README lists the classes alphabetically; each label's images checked).
ANIMAL_MNIST_CLASSES = ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")
# animal-mnist ships one 10k set; every 5th image (200 per class, labels come in blocks of 1000) is our test split.
ANIMAL_MNIST_TEST_EVERY = 5


class SourceMissing(UserError):
    """A benchmark's data source is not installed; the suite turns this into a one-line skip."""


@dataclass(frozen=True)
class DatasetConfig:
    """Which evaluation data to load.

    Args:
        kind: ``fashion-mnist``, ``animal-mnist``, ``folders`` or ``jsonl`` (see the module docstring).
        path: the idx directory (fashion-mnist; empty = Debian's location), the class-folder root (folders) or
            the .jsonl file (jsonl). Unused for animal-mnist.
        split: ``train`` or ``test`` for the MNIST-style sets; ignored otherwise.
        limit: keep at most this many images, evenly spaced over the set (so every class keeps its share).
    """

    kind: Literal["fashion-mnist", "animal-mnist", "folders", "jsonl"] = "folders"
    path: str = ""
    split: Literal["train", "test"] = "test"
    limit: int | None = None


def zeroshot_dataset(src: str, limit: int | None = None) -> DatasetConfig:
    """The labelled images ``src`` names: ``fashion-mnist``, ``animal-mnist``, a class-folder root or a .jsonl."""
    if src in ("fashion-mnist", "animal-mnist"):
        return DatasetConfig(kind=src, limit=limit)
    return DatasetConfig(kind="folders" if Path(src).is_dir() else "jsonl", path=src, limit=limit)


class ImageSet(abc.ABC):
    """A sequence of images loaded on demand: ``len(s)``, ``s.load(i) -> PIL.Image`` (or any preprocess input)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load(self, index: int) -> Any:
        """The image at ``index`` (0 <= index < len(self))."""


class ListImages(ImageSet):
    """Images (or any objects the pipeline's preprocess accepts) already in memory."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Any:
        return self.items[index]


class ArrayImages(ImageSet):
    """Grayscale uint8 images (N, H, W), given to the model as RGB (the channel repeated)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def load(self, index: int) -> Any:
        return Image.fromarray(self.array[index], mode="L").convert("RGB")


class FileImages(ImageSet):
    """Image files, decoded by ``clipforge.data.transforms.load_image`` (transparency flattened onto ``fill``)."""

    def __init__(self, paths: Sequence[Path], fill: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.paths = list(paths)
        self.fill = fill

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Any:
        return load_image(self.paths[index], fill_color=self.fill)


class Subset(ImageSet):
    def __init__(self, base: ImageSet, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Any:
        return self.base.load(self.indices[index])


@dataclass
class ClassificationData:
    """Labelled images. ``labels[i]`` indexes ``classnames``; a class may have no images (still a candidate)."""

    classnames: list[str]
    images: ImageSet
    labels: list[int]
    source: str


@dataclass
class RetrievalData:
    """Images with one or more captions each (``captions[i]`` belongs to image i)."""

    images: ImageSet
    captions: list[list[str]]
    source: str


def spaced_indices(n: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when limit is None or >= n)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise UserError(f"limit must be positive, got {limit}")
    return [int(i * n // limit) for i in range(limit)]


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzip idx file (the MNIST format: big-endian magic, dims, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path}: not an unsigned-byte idx file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated idx file ({array.size} bytes of data for shape {dims})")
    return array.reshape(dims)


def fashion_mnist(path: str = "", split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) from the idx files in ``path``."""
    root = Path(path or FASHION_MNIST_DIR)
    prefix = "t10k" if split == "test" else "train"
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise SourceMissing(f"Fashion-MNIST not found at {root}", hint=FASHION_MNIST_HINT)
    return _read_idx(images), _read_idx(labels).astype(np.int64)


def animal_mnist_files() -> tuple[Path, Path]:
    """Paths of animal-mnist's data and label pickles, found without importing the package."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("Animal-MNIST (PyPI animal-mnist) is not installed", hint=ANIMAL_MNIST_HINT)
    base = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"
    files = base / "animal_data_version_3.gz", base / "animal_label_version_3.gz"
    if not all(f.is_file() for f in files):
        raise SourceMissing(f"Animal-MNIST data files missing under {base}", hint=ANIMAL_MNIST_HINT)
    return files


def check_available(cfg: DatasetConfig) -> None:
    """Fail now, not when a long run first needs them, when ``cfg``'s images are not there.

    Raises:
        SourceMissing: for an MNIST-style set that is not installed (its message gives the install command).
        UserError: for a .jsonl file or class-folder root that does not exist.
    """
    if cfg.kind == "animal-mnist":
        animal_mnist_files()
    elif cfg.kind == "fashion-mnist":
        root = Path(cfg.path or FASHION_MNIST_DIR)
        prefix = "t10k" if cfg.split == "test" else "train"
        if not (root / f"{prefix}-images-idx3-ubyte.gz").is_file():
            raise SourceMissing(f"Fashion-MNIST not found at {root}", hint=FASHION_MNIST_HINT)
    elif not Path(cfg.path).exists():
        raise UserError(f"{cfg.path}: no such file or folder")


def animal_mnist(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST images (N, 28, 28) uint8 and labels (N,); ``test`` is every 5th image, ``train`` the rest."""
    data_path, label_path = animal_mnist_files()
    # The package's own data files (pickled numpy arrays, as its loader reads them): trusted like its code.
    with gzip.open(data_path, "rb") as f:
        images = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(label_path, "rb") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)
    is_test = np.arange(len(labels)) % ANIMAL_MNIST_TEST_EVERY == 0
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep]


def read_jsonl(path: Path) -> tuple[Source, list[Item]]:
    """A labelled/captioned JSONL image table (``clipforge.data.sources``) and its items whose image exists.

    Rows without an image, malformed lines and images that are not on disk are skipped and counted.
    """
    if not path.is_file():
        raise SourceMissing(f"{path} not found", hint="build the emoji set with 'clipforge data emoji DIR'")
    source = open_source(path, extra_columns=("label",))
    skipped, items = SkipStats(), []
    for item in source.items:
        if source.file(item).is_file():
            items.append(item)
        else:
            skipped.add("missing", item.path)
    skipped.log(log, str(path))
    if not items:
        raise UserError(f"{path}: no usable rows", hint='each line: {"image": "images/x.png", "captions": [...]}')
    return source, items


def _label(item: Item) -> str | None:
    label = item.fields.get("label")
    return str(label) if label is not None and str(label).strip() else None


def jsonl_labels(path: Path) -> set[str]:
    """The class labels of a labelled JSONL table."""
    return {label for item in read_jsonl(path)[1] if (label := _label(item))}


def _folder_classes(root: Path) -> ClassificationData:
    if not root.is_dir():
        raise UserError(f"{root} is not a directory", hint="give a folder with one sub-folder of images per class")
    classnames, paths, labels = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        classnames.append(folder.name)
        for f in list_images(folder):
            paths.append(f)
            labels.append(len(classnames) - 1)
    if not classnames or not paths:
        raise UserError(f"{root}: no class folders with images", hint="layout: DIR/<class name>/<images>")
    return ClassificationData(classnames, FileImages(paths), labels, f"folders {root}")


def load_classification(cfg: DatasetConfig) -> ClassificationData:
    """Load a labelled image set as configured (``limit`` applied)."""
    if cfg.kind == "fashion-mnist":
        images, labels = fashion_mnist(cfg.path, cfg.split)
        data = ClassificationData(list(FASHION_MNIST_CLASSES), ArrayImages(images), labels.tolist(), "fashion-mnist")
    elif cfg.kind == "animal-mnist":
        images, labels = animal_mnist(cfg.split)
        data = ClassificationData(list(ANIMAL_MNIST_CLASSES), ArrayImages(images), labels.tolist(), "animal-mnist")
    elif cfg.kind == "folders":
        data = _folder_classes(Path(cfg.path))
    elif cfg.kind == "jsonl":
        path = Path(cfg.path)
        source, items = read_jsonl(path)
        items = [it for it in items if _label(it)]
        if not items:
            raise UserError(f"{path}: no row has a label", hint='each line: {"image": "images/x.png", "label": "cat"}')
        classnames = sorted({_label(it) for it in items})
        index = {c: i for i, c in enumerate(classnames)}
        paths = [source.file(it) for it in items]
        data = ClassificationData(classnames, FileImages(paths), [index[_label(it)] for it in items], str(path))
    else:
        raise UserError(f"unknown dataset kind {cfg.kind!r}", hint="fashion-mnist, animal-mnist, folders or jsonl")
    keep = spaced_indices(len(data.labels), cfg.limit)
    if len(keep) < len(data.labels):
        data = ClassificationData(data.classnames, Subset(data.images, keep), [data.labels[i] for i in keep], data.source)
    return data


def load_retrieval(cfg: DatasetConfig) -> RetrievalData:
    """Load a captioned image set (``jsonl`` kind: each row's ``captions``; rows without captions are skipped)."""
    if cfg.kind != "jsonl":
        raise UserError(f"retrieval needs captions: dataset kind {cfg.kind!r} has none", hint="use a jsonl file")
    path = Path(cfg.path)
    source, items = read_jsonl(path)
    items = [it for it in items if it.captions]
    if not items:
        raise UserError(f"{path}: no rows with captions")
    items = [items[i] for i in spaced_indices(len(items), cfg.limit)]
    captions = [list(it.captions) for it in items]
    return RetrievalData(FileImages([source.file(it) for it in items]), captions, str(path))
