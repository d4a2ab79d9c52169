"""Feature extractors: images uint8 [N, H, W, C] → features float64 [N, D].

Every metric in ``ddkit.eval`` works in a feature space. Two are built in:

  "digits"     ``DigitsFeatures``: the penultimate layer (D = 128) of a small CNN classifier
               trained by ``scripts/train_digits_features.py`` on digits:train only and shipped
               inside the package (``digits_features.safetensors``). Its accuracy on the 500
               digits of digits:test is stored in the file (``DigitsFeatures().heldout_accuracy``).
               Loaded, never retrained, at evaluation time. For 8×8 images.
  "fashion"    ``FashionFeatures``: the same for 28×28 grey images (D = 128), trained by
               ``scripts/train_fashion_features.py`` on fashion-mnist:train only
               (``fashion_features.safetensors``; its fashion-mnist:test accuracy, overall and per
               class, is stored in the file).
  "inception"  Inception-v3 pool features (D = 2048) from an installed library whose weights are
               already on disk: torch-fidelity or pytorch-fid. ddkit never downloads weights and
               never re-implements Inception; without them ``get_features`` says what to install.

Any object with a ``name`` and ``__call__(images) -> [N, D]`` (the ``FeatureExtractor`` protocol)
can be passed to the metrics from Python instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .digits_net import DigitsFeatureNet, net_features
from .fashion_net import FashionFeatureNet

__all__ = [
    "FeatureExtractor",
    "DigitsFeatures",
    "FashionFeatures",
    "default_features",
    "InceptionFeatures",
    "get_features",
    "FEATURE_SETS",
    "check_images",
    "DIGITS_WEIGHTS",
    "FASHION_WEIGHTS",
]

DIGITS_WEIGHTS = Path(__file__).with_name("digits_features.safetensors")
FASHION_WEIGHTS = Path(__file__).with_name("fashion_features.safetensors")
FEATURE_SETS = ("digits", "fashion", "inception")
# torch hub file names of the FID Inception weights (the TF 2015-12-05 graph ported to PyTorch)
_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
_PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


@runtime_checkable
class FeatureExtractor(Protocol):
    """images: uint8 [N, H, W, C] → float64 [N, D]. ``name`` identifies the space (and its weights)."""

    name: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def check_images(images, name: str = "images") -> np.ndarray:
    """Validate images as uint8 [N, H, W, C] with C in (1, 3) and N >= 1; returns a numpy array."""
    a = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, H, W, C] in 0..255, got dtype {a.dtype}")
    if a.ndim != 4 or a.shape[3] not in (1, 3) or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape [N, H, W, C] with C = 1 or 3, got {list(a.shape)}")
    return a


class DigitsFeatures:
    """The shipped digits feature network. ``__call__``: uint8 [N, 8, 8, C] → float64 [N, 128].

    ``predict`` gives its class labels (int64 [N]): an independent digits classifier for benchmarks.
    ``heldout_accuracy`` is its accuracy on digits:test measured when it was trained.
    """

    name = "digits"
    size = 8
    net_class = DigitsFeatureNet
    script = "scripts/train_digits_features.py"

    def __init__(self, path: str | Path = DIGITS_WEIGHTS, batch_size: int = 1024):
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{self.name} feature weights not found at {path}; run {self.script}")
        with safe_open(str(path), framework="pt") as f:
            self.metadata = dict(f.metadata() or {})
        self.heldout_accuracy = float(self.metadata.get("heldout_accuracy", "nan"))
        self.net = self.net_class(feature_dim=int(self.metadata.get("feature_dim", 128)))
        self.net.load_state_dict(load_file(str(path)))
        self.net.eval()
        self.batch_size = batch_size
        self.fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def _to_float(self, images) -> torch.Tensor:
        a = check_images(images)
        if a.shape[1:3] != (self.size, self.size):
            raise ValueError(
                f"the {self.name} features need {self.size}×{self.size} images, got {a.shape[1]}×{a.shape[2]}; "
                "use --features inception (or your own extractor) for other sizes"
            )
        x = torch.from_numpy(a.astype(np.float32).mean(axis=3, keepdims=True))  # [N, s, s, 1]
        return x.permute(0, 3, 1, 2) / 255.0 * 2.0 - 1.0

    def __call__(self, images) -> np.ndarray:
        return net_features(self.net, self._to_float(images), self.batch_size).numpy()

    @torch.no_grad()
    def predict(self, images) -> np.ndarray:
        """Class labels int64 [N] of uint8 images [N, s, s, C] (s: 8 for the digits, 28 for Fashion-MNIST)."""
        x = self._to_float(images)
        out = [self.net(x[i : i + self.batch_size]).argmax(1) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(out).numpy().astype(np.int64)


class InceptionFeatures:
    """Inception-v3 pool features (float64 [N, 2048]) through torch-fidelity or pytorch-fid, from
    weights already in torch's hub cache. Images of any size; grey images are repeated to RGB."""

    name = "inception"

    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        ckpt = Path(torch.hub.get_dir()) / "checkpoints"
        self.batch_size, self.device = batch_size, device
        if importlib.util.find_spec("torch_fidelity") and (ckpt / _FIDELITY_WEIGHTS).is_file():
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            self.model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(ckpt / _FIDELITY_WEIGHTS)
            )
            self._kind = "fidelity"
        elif importlib.util.find_spec("pytorch_fid") and (ckpt / _PYTORCH_FID_WEIGHTS).is_file():
            from pytorch_fid.inception import InceptionV3

            self.model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            self._kind = "pytorch_fid"
        else:
            raise ValueError(
                "--features inception needs torch-fidelity (pip install torch-fidelity) or pytorch-fid with its "
                f"Inception weights already in {ckpt} ({_FIDELITY_WEIGHTS} or {_PYTORCH_FID_WEIGHTS}); "
                "ddkit never downloads them"
            )
        self.model.eval().to(device)

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        a = check_images(images)
        x = torch.from_numpy(a).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)  # uint8 [N, 3, H, W]
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i : i + self.batch_size].to(self.device)
            if self._kind == "fidelity":
                f = self.model(xb)[0]
            else:
                f = self.model(xb.float() / 255.0)[0].flatten(1)
            out.append(f.double().cpu())
        return torch.cat(out).numpy()


class FashionFeatures(DigitsFeatures):
    """The shipped Fashion-MNIST feature network. ``__call__``: uint8 [N, 28, 28, C] → float64 [N, 128].

    ``predict`` gives its class labels (int64 [N]); ``heldout_accuracy`` is its accuracy on
    fashion-mnist:test measured when it was trained, ``heldout_accuracy_per_class`` per class name.
    """

    name = "fashion"
    size = 28
    net_class = FashionFeatureNet
    script = "scripts/train_fashion_features.py"

    def __init__(self, path: str | Path = FASHION_WEIGHTS, batch_size: int = 1000):
        super().__init__(path, batch_size)
        self.heldout_accuracy_per_class = json.loads(self.metadata.get("heldout_accuracy_per_class", "{}"))


def default_features(shape) -> str:
    """The feature set for images of ``shape`` (H, W, C): "digits" for 8×8, "fashion" for 28×28
    grey, "inception" otherwise."""
    h, w, c = tuple(shape)[:3]
    if (h, w) == (8, 8):
        return "digits"
    if (h, w, c) == (28, 28, 1):
        return "fashion"
    return "inception"


def get_features(name: str) -> FeatureExtractor:
    """The built-in feature extractor called ``name`` ("digits", "fashion" or "inception")."""
    if name == "digits":
        return DigitsFeatures()
    if name == "fashion":
        return FashionFeatures()
    if name == "inception":
        return InceptionFeatures()
    raise ValueError(f"unknown feature set {name!r}; choose one of {', '.join(FEATURE_SETS)}")
