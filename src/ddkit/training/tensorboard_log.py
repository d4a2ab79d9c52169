"""``ddkit train --log-to tensorboard``: TensorBoard event files in RUN/tensorboard.

The trainer calls the logger where it writes log.jsonl and its preview grids:

    train/loss, train/lr, train/images_per_s     scalars at every log.jsonl line
    samples                                      the preview grid (RUN/samples/step-N.png), as an image
    eval/<name>                                  any evaluation metric handed to :meth:`metrics`

``tensorboard`` is an optional extra (``pip install ddkit[tensorboard]``), imported only when this
logger is asked for. View with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .rundir import RunDir


class TensorBoardLogger:
    """Writes scalars and images for one run; the event file is opened on the first write."""

    def __init__(self, run_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "--log-to tensorboard needs the tensorboard package: pip install ddkit[tensorboard]"
            ) from None
        self._writer_cls, self.log_dir, self._writer = SummaryWriter, RunDir(run_dir).tensorboard, None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self._writer_cls(log_dir=str(self.log_dir))
        return self._writer

    def scalars(self, step: int, values: dict, prefix: str = "train/") -> None:
        """One scalar per (name, number) in ``values``, tagged ``prefix + name``."""
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(prefix + name, float(value), step)
        self.writer.flush()

    def metrics(self, step: int, metrics: dict) -> None:
        """Evaluation results (e.g. ``ddkit.eval.evaluate_samples``'s dict) as ``eval/<name>``."""
        self.scalars(step, metrics, prefix="eval/")

    def image(self, step: int, tag: str, image: str | Path | np.ndarray) -> None:
        """An image: a PNG path (skipped if it does not exist, e.g. a 2-D run's scatter plot is
        still logged) or a uint8 array [H, W, C]."""
        if not isinstance(image, np.ndarray):
            if not Path(image).is_file():
                return
            from PIL import Image

            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        if image.ndim == 2:
            image = image[:, :, None]
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
