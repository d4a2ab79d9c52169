"""Train the digits feature network shipped with ddkit, on digits:train only, and save it.

    python scripts/train_digits_features.py            # writes src/ddkit/eval/digits_features.safetensors

The network (ddkit.eval.digits_net.DigitsFeatureNet) is trained with train_digits_feature_net on the
1,297 digits of the fixed digits:train split (ddkit.data.digits_split_indices), then its accuracy on
the 500 held-out digits of digits:test is measured and stored in the file's metadata
("heldout_accuracy"), with the settings used. ddkit's evaluation loads this file and never retrains.
Deterministic given --seed on one machine (CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ddkit.data import load_data
from ddkit.eval.digits_net import feature_net_accuracy, train_digits_feature_net

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ddkit" / "eval" / "digits_features.safetensors"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, test = load_data("digits:train"), load_data("digits:test")
    net = train_digits_feature_net(seed=args.seed, epochs=args.epochs, images=train.x, labels=train.y)
    train_acc = feature_net_accuracy(net, train.x, train.y)
    test_acc = feature_net_accuracy(net, test.x, test.y)
    metadata = {
        "heldout_accuracy": f"{test_acc:.6f}",
        "train_accuracy": f"{train_acc:.6f}",
        "trained_on": "digits:train",
        "heldout": "digits:test",
        "num_train": str(len(train)),
        "num_heldout": str(len(test)),
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "feature_dim": str(net.feature_dim),
        "script": "scripts/train_digits_features.py",
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(args.out), metadata=metadata)
    print(json.dumps(metadata, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
