"""Checkpoints are data, never code.

    RUN/config.json                        every setting (config.RunConfig), JSON
    RUN/checkpoints/step-000500/
        model.safetensors                  the trained weights
        ema.safetensors                    the EMA weights (used for sampling by default)
        state.pt                           optimizer, step, data position, RNG states:
                                           tensors and plain Python values only, read with
                                           torch.load(weights_only=True)
    RUN/checkpoints/best/                  with evaluation during training: the weights with the
        model.safetensors, ema.safetensors best validation score so far (no state.pt; resume
        best.json                          continues the newest step checkpoint), and its record

Crash safety (``kill -9`` at any moment): a checkpoint is written into a hidden temporary folder
``checkpoints/.tmp-step-NNNNNN-PID``, every file is fsync'ed, ``manifest.json`` (each file's name
and size) is written last, and the folder is renamed into place (then the parent folder is
fsync'ed). A checkpoint counts only when its manifest matches its files, so ``latest_checkpoint``
never returns a half-written one. Old checkpoints are pruned by renaming them to ``.trash-*``
first. :func:`clean_incomplete` removes what a crash left (``.tmp-*``, ``.trash-*``, incomplete
step folders); the trainer calls it when it starts. A folder without a manifest is not a
checkpoint. :func:`load_matching` loads weights only into a network they were made for (one line
saying what differs).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..nn import config_from_dict, config_to_dict
from .rundir import RunDir

_STEP_DIR = re.compile(r"^step-(\d+)$")
MODEL_METADATA = "ddkit_model"  # safetensors header key: the model config (JSON) the weights are for
WEIGHT_FILES = ("model.safetensors", "ema.safetensors", "state.pt")
MANIFEST = "manifest.json"
BEST_RECORD = "best.json"  # in RUN/checkpoints/best: the step and the validation scores that chose it
BEST_FILES = ("model.safetensors", "ema.safetensors", BEST_RECORD)


def checkpoint_bytes(model: nn.Module) -> int:
    """About what one checkpoint takes: weights, EMA and AdamW's two moments (4 copies), plus slack."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 4 * n + (1 << 20)


def is_complete(ckpt: str | os.PathLike, required: tuple[str, ...] = WEIGHT_FILES) -> bool:
    """True when ``ckpt`` holds a whole checkpoint: its manifest lists every ``required`` file, and
    every file it lists has the size it has on disk."""
    ckpt = Path(ckpt)
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    try:
        files = manifest["files"]
        return set(required) <= set(files) and all(
            (ckpt / name).stat().st_size == int(size) for name, size in files.items()
        )
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return False


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (incomplete ones are skipped)."""
    root = RunDir(run_dir).checkpoints
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if is_complete(p)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def clean_incomplete(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what a crash left in RUN/checkpoints: temporary and trash folders and step folders
    that are not complete. Call it only while holding the run's lock. Returns what was removed."""
    root = RunDir(run_dir).checkpoints
    if not root.is_dir():
        return []
    removed = []
    for p in sorted(root.iterdir()):
        leftover = p.name.startswith((".tmp-", ".trash-"))
        if leftover or (_STEP_DIR.match(p.name) and p.is_dir() and not is_complete(p)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk (folders: where the OS allows it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _write_checkpoint_files(
    tmp: Path,
    model_state: dict,
    ema_state: dict,
    train_state: dict | None,
    metadata: dict[str, str] | None,
    record: dict | None = None,
) -> None:
    """The files of a step checkpoint (``train_state``) or of the best one (``record``), fsync'ed,
    and the manifest last."""
    save_file(_contiguous(model_state), tmp / "model.safetensors", metadata=metadata)
    save_file(_contiguous(ema_state), tmp / "ema.safetensors", metadata=metadata)
    names = ["model.safetensors", "ema.safetensors"]
    if train_state is not None:
        torch.save(train_state, tmp / "state.pt")
        names.append("state.pt")
    if record is not None:
        (tmp / BEST_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        names.append(BEST_RECORD)
    for name in names:
        _fsync(tmp / name)
    manifest = {"files": {name: (tmp / name).stat().st_size for name in names}}
    (tmp / MANIFEST).write_text(json.dumps(manifest) + "\n")  # last: it marks the checkpoint whole
    _fsync(tmp / MANIFEST)
    _fsync(tmp)


def _write_in_place(final: Path, what: str, files: tuple, kept: Callable[[], str] = str) -> Path:
    """Write the checkpoint folder ``final`` whole under ``.tmp-NAME-PID`` (``files``: the arguments
    of :func:`_write_checkpoint_files` after the folder), then rename it into place (the previous one
    renamed away first). A failed write removes the temporary folder and raises OSError naming
    ``what``, followed by ``kept()`` (what is still intact)."""
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_checkpoint_files(tmp, *files)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        _fsync(final.parent)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(e, "strerror", None) or " ".join(str(e).split())[:200]
        raise OSError(f"cannot write {what} {final}: {reason} (disk full or not writable?){kept()}") from e
    return final


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model_state: dict,
    ema_state: dict,
    train_state: dict,
    keep: int = 2,
    *,
    metadata: dict[str, str] | None = None,
    keep_steps: tuple[int, ...] = (),
) -> Path:
    """Write one checkpoint atomically (see the module docstring) and prune all but the newest
    ``keep`` (checkpoints of the steps in ``keep_steps`` are never pruned, e.g. an early one kept
    for autoguidance). ``metadata``: strings stored in both safetensors headers (the trainer stores the
    model config there, so a mismatched checkpoint can say what differs).

    A failed write (full disk, read-only folder) raises OSError naming the step and leaves the
    previous checkpoints as they were."""

    def kept() -> str:
        previous = latest_checkpoint(run_dir)
        return f"; the previous checkpoint {previous} is intact" if previous else ""

    files = (model_state, ema_state, train_state, metadata)
    final = _write_in_place(RunDir(run_dir).checkpoint(step), "checkpoint", files, kept)
    for old in list_checkpoints(run_dir)[:-keep]:
        if int(_STEP_DIR.match(old.name).group(1)) not in keep_steps:
            _discard(old)
    return final


def save_best(
    run_dir: str | os.PathLike,
    model_state: dict,
    ema_state: dict,
    record: dict,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write RUN/checkpoints/best (the weights chosen on the validation part, and ``record``, e.g.
    ``{"step", "select", "score", "scores"}``, as best.json) in place of the previous one.

    Crash safety as for step checkpoints: written whole under ``.tmp-best-PID`` (manifest last), then
    the old best is renamed away and the new one renamed into place; a crash between those two
    renames leaves a complete ``.tmp-best-*`` that :func:`recover_best` puts in place."""
    files = (model_state, ema_state, None, metadata, record)
    return _write_in_place(RunDir(run_dir).best, "the best checkpoint", files)


def read_best(run_dir: str | os.PathLike) -> dict | None:
    """The record (best.json) of a run's complete best checkpoint, or None when it has none."""
    best = RunDir(run_dir).best
    if not is_complete(best, BEST_FILES):
        return None
    try:
        record = json.loads((best / BEST_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recover_best(run_dir: str | os.PathLike) -> Path | None:
    """When a crash came between the two renames of :func:`save_best` (no complete best, but a
    complete ``.tmp-best-*``), put that one in place. Call it while holding the run's lock, before
    :func:`clean_incomplete`. Returns the best checkpoint put in place, or None."""
    best = RunDir(run_dir).best
    if is_complete(best, BEST_FILES) or not best.parent.is_dir():
        return None
    found = [p for p in best.parent.glob(f".tmp-{best.name}-*") if p.is_dir() and is_complete(p, BEST_FILES)]
    if not found:
        return None
    if best.exists():
        _discard(best)
    os.replace(max(found, key=lambda p: p.stat().st_mtime), best)
    _fsync(best.parent)
    return best


def _discard(ckpt: Path) -> None:
    """Remove a checkpoint so that a crash halfway never leaves a partial ``step-*`` folder:
    rename it out of sight first, then delete it."""
    trash = ckpt.with_name(f".trash-{ckpt.name}-{os.getpid()}")
    os.replace(ckpt, trash)
    shutil.rmtree(trash, ignore_errors=True)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a safetensors file into a state dict."""
    try:
        return load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise ValueError(f"no weights file {path}") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"cannot read weights {path}: {e}") from None


def weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata in a safetensors header ({} when there is none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise ValueError(f"cannot read weights {path}: {e}") from None


def load_train_state(path: str | os.PathLike) -> dict:
    """Read state.pt with ``weights_only=True``: tensors and plain values only, never code (a
    pickle that names any other object is refused before anything in it runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"no training state {path}") from None
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise ValueError(
            f"refused to load {path}: it holds objects other than tensors and plain values "
            f"(read with torch.load(weights_only=True); {first[:200]})"
        ) from None
    except Exception as e:
        raise ValueError(f"cannot read training state {path}: {e}") from None


def describe_mismatch(expected: dict, found: dict) -> str:
    """'image_size 8 vs 32, in_channels 1 vs 3': the model-config fields that differ."""
    keys = sorted(set(expected) | set(found), key=lambda k: (k != "kind", k))
    diffs = [f"{k} {found.get(k, '-')} vs {expected.get(k, '-')}" for k in keys if expected.get(k) != found.get(k)]
    return ", ".join(diffs)


def _with_defaults(model_config: dict) -> dict:
    """A model config dict with the fields it leaves out at their defaults (a checkpoint written
    before a field existed, e.g. ``augment_dim``, records the same network); as it is when unreadable."""
    try:
        return config_to_dict(config_from_dict(model_config))
    except (ValueError, TypeError):
        return model_config


def load_matching(
    model: nn.Module,
    path: str | os.PathLike,
    model_config: dict,
    device: str | torch.device = "cpu",
    *,
    ignore: tuple[str, ...] = (),
) -> None:
    """Load safetensors weights into ``model`` (built from ``model_config``, a config dict), or
    raise one ValueError line saying what differs: the config fields the checkpoint records
    (checkpoints ddkit writes carry their model config; fields in ``ignore``, such as a dropout
    rate, which no tensor depends on, may differ), else the first mismatching tensor."""
    meta = weights_metadata(path).get(MODEL_METADATA, "null")
    try:  # no (or unreadable) model config: the tensors below say what differs
        found = json.loads(meta)
    except ValueError:
        found = None
    if isinstance(found, dict):
        found, model_config = ({k: v for k, v in c.items() if k not in ignore} for c in (found, model_config))
    if isinstance(found, dict) and (found := _with_defaults(found)) != _with_defaults(model_config):
        raise ValueError(
            f"the checkpoint {path} is for another network ({describe_mismatch(model_config, found)}, "
            "checkpoint vs run)"
        )
    state = load_weights(path, device)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(
            f"the checkpoint {path} is for another network: "
            + (f"it lacks {missing[0]}" if missing else f"it has an unknown tensor {extra[0]}")
            + f" ({len(missing)} missing, {len(extra)} unexpected tensors)"
        )
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ValueError(
                f"the checkpoint {path} is for another network: {k} has shape "
                f"{list(state[k].shape)}, the run's model expects {list(v.shape)}"
            )
        if not torch.isfinite(state[k]).all() and state[k].is_floating_point():
            raise ValueError(f"the checkpoint {path} holds non-finite values in {k}")
    model.load_state_dict(state)
