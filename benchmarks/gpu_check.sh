#!/usr/bin/env bash
# The GPU check (about 5 minutes on one GPU): ddkit's CUDA paths, training throughput against diffusers,
# and a short Fashion-MNIST run with its validation FID.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]      # default: $OUT, else ./gpu_check_out
#
# Each result is written to the output folder as soon as it is done (summary.txt grows line by line,
# one log per step), so a check cut short still leaves what it finished. It needs no internet and no
# apt: it runs ddkit from this checkout (PYTHONPATH=src, no pip install) with whatever torch is
# installed, skips the diffusers comparison when diffusers is missing, and skips the Fashion-MNIST run
# when the data are missing (DDKIT_FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, or a copy in
# ./shared/fashion-mnist), saying so in summary.txt. Steps have their own time limits.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
PY="${PYTHON:-python3}"
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"

note() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$SUMMARY"; }

# step NAME SECONDS COMMAND...: run with a time limit, output to NAME.log, one summary line
step() {
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
  local rc=$?
  note "$name: exit $rc in $((SECONDS - start)) s (log: $name.log)$([ $rc -eq 124 ] && echo ', TIMED OUT')"
  return $rc
}

# ---- 0. the machine: what is installed (a bare machine may lack diffusers, the data, even a GPU)
step environment 60 "$PY" - <<'EOF'
import importlib.util, platform, sys
import torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda build", torch.version.cuda)
print("cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
for name in ("diffusers", "safetensors", "sklearn", "PIL", "tqdm", "scipy", "pytest", "hypothesis"):
    print(name, "yes" if importlib.util.find_spec(name) else "MISSING")
import ddkit
print("ddkit from", ddkit.__file__)
EOF
cat "$RESULTS/environment.log" >>"$SUMMARY"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  note "no CUDA device visible to torch: nothing else to check"
  exit 0
fi
HAVE_DIFFUSERS=$("$PY" -c "import importlib.util; print(int(importlib.util.find_spec('diffusers') is not None))")

# ---- 1. the CUDA paths: the network, the loss, the samplers and the trainer on the GPU against the CPU
step cuda_paths 120 "$PY" - <<'EOF'
import json, tempfile
import torch
import ddkit
from ddkit import Schedule, diffusion_loss
from ddkit.generate import generate
from ddkit.nn import build_model, default_model_config

torch.manual_seed(0)
cfg = default_model_config("image", (1, 28, 28), num_classes=10)
cpu = build_model(cfg).eval()
gpu = build_model(cfg).eval()
gpu.load_state_dict(cpu.state_dict())
gpu = gpu.cuda()
x, t, y = torch.randn(8, 1, 28, 28), torch.randint(0, 1000, (8,)), torch.arange(8)
out = {}
with torch.no_grad():
    ref = cpu(x, t, y)
    out["unet_fp32_max_abs_diff"] = float((gpu(x.cuda(), t.cuda(), y.cuda()).cpu() - ref).abs().max())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out["unet_bf16_max_abs_diff"] = float((gpu(x.cuda(), t.cuda(), y.cuda()).float().cpu() - ref).abs().max())
sched = Schedule.cosine(1000)
gen = torch.Generator("cuda").manual_seed(0)
loss = diffusion_loss(lambda xt, tt: gpu.train()(xt, tt, y.cuda()), sched,
                      x.cuda(), gen)
loss.backward()
out["loss_on_cuda"] = float(loss.detach())
for name, opts in (("ddim", {"steps": 20}), ("dpm++", {"steps": 10}), ("ddpm", {})):  # ddpm: all 1,000 steps
    a = generate(cpu, sched, 16, sampler=name, seed=3, labels=torch.arange(16) % 10, **opts)
    b = generate(gpu.eval(), sched, 16, sampler=name, seed=3, labels=torch.arange(16) % 10, device="cuda", **opts)
    out[f"{name}_cpu_vs_cuda_max_abs_diff"] = float((a - b).abs().max())
with tempfile.TemporaryDirectory() as d:
    for precision in ("fp32", "bf16"):
        run = ddkit.train(out=f"{d}/{precision}", data="digits:train", steps=60, device="cuda", precision=precision,
                          batch_size=64, ckpt_every=30, sample_every=1000, progress=False)
        model, schedule, config = ddkit.load(run, device="cuda")
        s = generate(config.diffusion.eps_network(model, schedule), schedule, 8, sampler="ddim", steps=10, device="cuda")
        out[f"train_{precision}_finite"] = bool(torch.isfinite(s).all())
print(json.dumps(out, indent=1))
ok = out["unet_fp32_max_abs_diff"] < 1e-3 and all(v for k, v in out.items() if k.endswith("_finite"))
raise SystemExit(0 if ok else 1)
EOF
cp "$RESULTS/cuda_paths.log" "$RESULTS/cuda_paths.json" 2>/dev/null
step tests_fast 150 "$PY" -m pytest -x -q -p no:cacheprovider -m "not slow" \
  tests/test_samplers.py tests/test_precision.py tests/test_fashion_mnist.py tests/test_nn.py

# ---- 2. training throughput of the CIFAR-10 UNet (35.7M parameters), fp32 and bf16, against diffusers
for precision in fp32 bf16; do
  if [ "$HAVE_DIFFUSERS" = 1 ]; then
    step "throughput_$precision" 90 "$PY" benchmarks/throughput.py --device cuda --precision "$precision" \
      --json "$RESULTS/throughput_$precision.json"
  else
    note "throughput_$precision: diffusers is not installed: ddkit fp32 against $precision only (no diffusers comparison)"
    [ "$precision" = bf16 ] && step throughput_precision_bf16 90 "$PY" benchmarks/throughput.py --device cuda \
      --compare precision --precision bf16 --json "$RESULTS/throughput_precision_bf16.json"
  fi
done

# ---- 3. a few minutes of Fashion-MNIST with its validation FID (the shipped 28×28 features)
for dir in "${DDKIT_FASHION_MNIST_DIR:-}" /usr/share/datasets/fashion-mnist "$PWD/shared/fashion-mnist"; do
  if [ -n "$dir" ] && { [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "$dir/train-images-idx3-ubyte" ]; }; then
    export DDKIT_FASHION_MNIST_DIR="$dir"
    break
  fi
done
if "$PY" -c "from ddkit.data import check_fashion_files as c; c('fashion-mnist:train'); c('fashion-mnist:test')" 2>/dev/null; then
  step fashion_train 170 "$PY" -m ddkit train --data fashion-mnist --device cuda --precision bf16 --minutes 2 \
    --val 5000 --eval-every 250 --eval-num 1000 --out "$RESULTS/fashion_run" --no-progress
  "$PY" - "$RESULTS" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
log = Path(sys.argv[1]) / "fashion_run" / "log.jsonl"
rows = [json.loads(l) for l in log.read_text().splitlines() if l.strip()] if log.is_file() else []
fids = [(r["step"], round(r["fid"], 2)) for r in rows if "fid" in r]
speed = [r["images_per_s"] for r in rows if "images_per_s" in r]
print("fashion validation FID by step:", fids, "| images/s (median):", sorted(speed)[len(speed) // 2] if speed else None)
(Path(sys.argv[1]) / "fashion_fid.json").write_text(json.dumps({"fid_by_step": fids, "images_per_s": speed}))
EOF
else
  note "fashion_train: skipped: the Fashion-MNIST files are not on this machine (apt-get install dataset-fashion-mnist, or carry them in shared/fashion-mnist)"
fi
note "done"
