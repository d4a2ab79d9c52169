"""Guidance at 28×28 (issue 22 §7): a class-conditional Fashion-MNIST run sampled with
classifier-free guidance at scales 0, 1 and 3 (ddkit's convention: 1 is the plain conditional model,
0 the unconditional one), DPM-Solver++ with 10 steps. For each scale:

- class accuracy by the shipped feature network (``FashionFeatures().predict``), overall and per
  class, beside that network's accuracy on the real test images;
- FID per class against that class's 1,000 test images, beside the real level: as many training
  images of the class against the same test images;
- FID of all samples against the 10,000 test images, beside the real level at that count;
- a grid with ten columns, one class per column.

Every number is a mean over ``--sets`` start-noise sets (± their standard deviation); sample i of
set s has class i mod 10 and start noise seeded by (s, i), the same at every scale.

    python benchmarks/fashion_guidance.py RUN [--per-class 200] [--sets 2] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ddkit
from ddkit.data import load_data
from ddkit.data.fashion_mnist import FASHION_CLASSES
from ddkit.data.images import save_grid, to_uint8
from ddkit.eval import evaluate_samples
from ddkit.eval.features import get_features
from ddkit.generate import generate

SCALES = (0.0, 1.0, 3.0)


def mean_sd(values) -> list[float]:
    return [float(np.mean(values)), float(np.std(values))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a class-conditional run on fashion-mnist")
    p.add_argument("--per-class", type=int, default=200, help="samples per class and set")
    p.add_argument("--sets", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="DPM-Solver++ steps")
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/fashion_guidance"))
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    features = get_features("fashion")
    test, train = load_data("fashion-mnist:test"), load_data("fashion-mnist:train")
    test_img, train_img = to_uint8(test.x), to_uint8(train.x)
    n, k = 10 * args.per_class, len(FASHION_CLASSES)
    results_path = args.out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    # the real levels: the features' accuracy on the test images; N training images against the test ones
    if "real" not in results:
        rng = np.random.default_rng(0)
        per_class = {}
        for c, name in enumerate(FASHION_CLASSES):
            ref, pool = test_img[test.y.numpy() == c], np.flatnonzero(train.y.numpy() == c)
            fids = [evaluate_samples(train_img[rng.choice(pool, args.per_class, replace=False)], ref,
                                     metrics=("fid",), features=features)["fid"] for _ in range(args.sets)]  # fmt: skip
            per_class[name] = {"fid": mean_sd(fids), "accuracy": features.heldout_accuracy_per_class.get(name)}
        fids = [evaluate_samples(train_img[rng.choice(len(train_img), n, replace=False)], test_img,
                                 metrics=("fid",), features=features)["fid"] for _ in range(args.sets)]  # fmt: skip
        results["real"] = {"accuracy": features.heldout_accuracy, "fid_all": mean_sd(fids), "per_class": per_class}
        results_path.write_text(json.dumps(results, indent=1))

    model, schedule, config = ddkit.load(args.run)
    if not config.train.class_cond:
        sys.exit(f"{args.run} is not class-conditional")
    net = config.diffusion.eps_network(model, schedule)
    labels = torch.arange(n) % k
    for w in SCALES:
        key = f"w={w:g}"
        if key in results:
            continue
        t0 = time.process_time()
        make = lambda y, w=w: ddkit.classifier_free_guidance(net, y, w)  # noqa: E731
        sets = []
        for s in range(args.sets):
            x = generate(net, schedule, n, sampler="dpm++", steps=args.steps, labels=labels, model_fn_for=make,
                         seed=s, clip_x0=(-1.0, 1.0))  # fmt: skip
            sets.append(to_uint8(x))
            if s == 0:
                save_grid(sets[0][:80], args.out_dir / f"grid_w{w:g}.png", nrow=k, scale=2)
        y = labels.numpy()
        predicted = [features.predict(img) for img in sets]  # once per set; the classes read their share
        row = {"accuracy": mean_sd([(pred == y).mean() for pred in predicted]),
               "fid_all": mean_sd([evaluate_samples(img, test_img, metrics=("fid",), features=features)["fid"]
                                   for img in sets]),
               "per_class": {}}  # fmt: skip
        for c, name in enumerate(FASHION_CLASSES):
            ref = test_img[test.y.numpy() == c]
            row["per_class"][name] = {
                "accuracy": mean_sd([(pred[y == c] == c).mean() for pred in predicted]),
                "fid": mean_sd([evaluate_samples(img[y == c], ref, metrics=("fid",), features=features)["fid"]
                                for img in sets]),
            }  # fmt: skip
        row["cpu_s"] = time.process_time() - t0
        results[key] = row
        results_path.write_text(json.dumps(results, indent=1))
        print(key, f"accuracy {row['accuracy'][0]:.3f}, FID {row['fid_all'][0]:.1f}", flush=True)
    table(results, args)
    return 0


def table(results: dict, args) -> None:
    """The per-class table (markdown) to stdout and table.md."""
    real, scales = results["real"], [f"w={w:g}" for w in SCALES]
    head = "| class | real acc | " + " | ".join(f"acc {s}" for s in scales) + " | real FID | "
    head += " | ".join(f"FID {s}" for s in scales) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(scales))]
    for name in FASHION_CLASSES:
        cells = [f"{100 * real['per_class'][name]['accuracy']:.1f} %"]
        cells += [f"{100 * results[s]['per_class'][name]['accuracy'][0]:.1f} %" for s in scales]
        cells += [f"{real['per_class'][name]['fid'][0]:.1f} ± {real['per_class'][name]['fid'][1]:.1f}"]
        cells += [f"{results[s]['per_class'][name]['fid'][0]:.1f} ± {results[s]['per_class'][name]['fid'][1]:.1f}"
                  for s in scales]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"{100 * real['accuracy']:.1f} %"] + [f"{100 * results[s]['accuracy'][0]:.1f} %" for s in scales]
    cells += [f"{real['fid_all'][0]:.1f} ± {real['fid_all'][1]:.1f} (all)"]
    cells += [f"{results[s]['fid_all'][0]:.1f} ± {results[s]['fid_all'][1]:.1f} (all)" for s in scales]
    lines.append("| **all** | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    (args.out_dir / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
