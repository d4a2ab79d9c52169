"""Train the Fashion-MNIST feature network shipped with ddkit, on fashion-mnist:train only, and save it.

    nice -n 19 python scripts/train_fashion_features.py   # writes src/ddkit/eval/fashion_features.safetensors

The network (ddkit.eval.fashion_net.FashionFeatureNet) is trained with train_fashion_feature_net on the
60,000 images of fashion-mnist:train, on one CPU thread; then its accuracy on the 10,000 images of
fashion-mnist:test, overall and per class, is measured and stored in the file's metadata with the
settings used. ddkit's evaluation loads this file and never retrains. Deterministic given --seed on one
machine. Needs the data set (apt-get install dataset-fashion-mnist, or DDKIT_FASHION_MNIST_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from ddkit.data import FASHION_CLASSES, load_data
from ddkit.eval.fashion_net import class_accuracy, train_fashion_feature_net

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ddkit" / "eval" / "fashion_features.safetensors"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    train, test = load_data("fashion-mnist:train"), load_data("fashion-mnist:test")
    start = time.process_time()
    net = train_fashion_feature_net(
        train.x,
        train.y,
        seed=args.seed,
        epochs=args.epochs,
        log=lambda e, loss: print(
            f"epoch {e + 1}: loss {loss:.4f} ({time.process_time() - start:.0f} s CPU)", flush=True
        ),
    )
    cpu_s = time.process_time() - start
    train_acc, _ = class_accuracy(net, train.x, train.y)
    test_acc, per_class = class_accuracy(net, test.x, test.y)
    metadata = {
        "heldout_accuracy": f"{test_acc:.6f}",
        "heldout_accuracy_per_class": json.dumps({n: round(a, 4) for n, a in zip(FASHION_CLASSES, per_class)}),
        "train_accuracy": f"{train_acc:.6f}",
        "trained_on": "fashion-mnist:train",
        "heldout": "fashion-mnist:test",
        "num_train": str(len(train)),
        "num_heldout": str(len(test)),
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "feature_dim": str(net.feature_dim),
        "train_cpu_seconds": f"{cpu_s:.0f}",
        "threads": "1",
        "script": "scripts/train_fashion_features.py",
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, args.out)
    print(json.dumps(metadata, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
