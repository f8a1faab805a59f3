"""Checkpoint files: a learner's state written atomically, and read back checked.

A checkpoint is a folder ``<dir>/iter-NNNNNN/``:

* ``model.safetensors``: the policy's weights (tied weights handled by safetensors);
* ``optimizer.pt``: the optimizer state with ``torch.save``, loaded back with
  ``weights_only=True`` (tensors and plain containers: no arbitrary unpickling); absent from a
  weights-only checkpoint (``save_optimizer=False``), which can be evaluated but not resumed;
* ``rng.safetensors``: the torch RNG states (global, the learner's sampling generator per rank,
  CUDA's);
* ``extra.safetensors``: tensors a learner adds (NLPO: its mask policy), if any;
* ``state.json``: counters, config, the numpy RNG, what the KL reference is, the training env's
  state (``env_state``: a curriculum's ``state_dict()``, None for an env without one), the
  sha256 of every file above and a checksum of its own content.

The learner writes these files (:meth:`~agents.base.Learner.save_checkpoint`);
:func:`write_checkpoint` has them written into a temporary folder that is renamed into place,
then replaces the ``<dir>/latest`` pointer atomically: a reader never sees half a checkpoint.
:func:`read_checkpoint` reads and checks everything before anything is loaded into a learner; a
missing, truncated or corrupted file, NaN/inf weights, or a checkpoint of another learner or
model shape raise :class:`~textgym.errors.CheckpointError` naming the file and the problem. A
checkpoint that cannot be written (disk full, permission denied, a read-only folder) raises
:class:`CheckpointWriteError` naming the path and the OS reason; ``latest`` still names the last
complete checkpoint.
``textgym eval`` checks a checkpoint's model with the same functions (:func:`resolve_checkpoint`,
:func:`read_checkpoint_state`, :func:`check_model_file`, :func:`verify_checkpoint_files`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textgym.errors import CheckpointError

# The state.json fields a learner needs to resume.
STATE_FIELDS = (
    "learner",
    "iteration",
    "episodes",
    "tokens",
    "skipped_updates",
    "kl_coef",
    "best_eval",
    "evals_without_improvement",
    "numpy_rng",
    "extra",
)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint where one was expected (no ``state.json``)."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (disk full, permission denied, a read-only folder).
    Nothing was half-written: ``latest`` still names the last complete checkpoint. ``errno`` is
    the OS error's number."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.errno = code


# -- writing ------------------------------------------------------------------------------------


def write_checkpoint(
    root: Path,
    name: str,
    write: Callable[[Path], dict[str, Any]],
    *,
    keep: int,
    size: int = 0,
) -> Path:
    """Write the checkpoint ``root/name/`` atomically, point ``root/latest`` at it and keep the
    ``keep`` most recent checkpoints; returns the folder.

    ``write(folder)`` writes the checkpoint's files into ``folder`` (a temporary one) and returns
    the content of ``state.json``, to which the files' hashes and its checksum are added. Only then
    is the folder renamed into place and ``latest`` replaced: a process killed meanwhile leaves a
    temporary, which the next call removes. ``size``: about how many bytes the files take; less
    free space than that fails before anything is written. A folder that cannot be written (disk
    full, permission denied, read-only) raises :class:`CheckpointWriteError` naming the path and
    the OS reason, with the temporary removed and ``latest`` unchanged."""
    final = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".*.tmp-*"):  # left behind by a process killed while saving
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    except OSError as e:
        raise _write_error(final, e, root) from None
    tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()  # first: a read-only folder or a missing permission is said as such
        free = shutil.disk_usage(root).free
        if size and free < size:
            raise CheckpointWriteError(
                errno.ENOSPC,
                f"cannot write checkpoint {final}: {os.strerror(errno.ENOSPC)} (it needs about "
                f"{size / 1e6:.1f} MB, {free / 1e6:.1f} MB are free); free some space, lower "
                f"keep_checkpoints, or save weights only (save_optimizer=False, "
                f"--no-save-optimizer)",
            )
        state = write(tmp)
        # Bit rot or a stray edit must not load silently: every file's hash, and a checksum of
        # state.json's own content, are checked by resume and eval.
        state["files"] = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
        state["checksum"] = _state_checksum(state)
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        if final.exists():  # saving the same iteration again: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / f".latest.tmp-{uuid.uuid4().hex[:8]}"
        try:
            pointer.write_text(name)
            os.replace(pointer, root / "latest")  # last: never a half-written checkpoint
        finally:
            pointer.unlink(missing_ok=True)
    except Exception as e:  # OSError, or torch's / safetensors' own error wrapping one
        if isinstance(e, CheckpointError) or not _is_write_failure(e, root, size):
            raise
        raise _write_error(final, e, root) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(root.glob("iter-*"))[: -max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _is_write_failure(error: Exception, root: Path, size: int) -> bool:
    """Whether ``error``, raised while writing a checkpoint into ``root``, is the file system
    refusing the write: an OSError, or torch's / safetensors' error around one (torch.save's says
    only "unexpected pos" when the disk fills up)."""
    if isinstance(error, OSError) or re.search(r"os error \d+", str(error)):
        return True
    try:
        return shutil.disk_usage(root).free < max(size, 1 << 20)
    except OSError:
        return True


def _write_error(final: Path, error: Exception, root: Path) -> CheckpointWriteError:
    """The one-line :class:`CheckpointWriteError` for ``error``: the path and the OS reason."""
    code = getattr(error, "errno", None)
    found = re.search(r"os error (\d+)", str(error))
    if code is None and found:
        code = int(found.group(1))
    if code is None and not isinstance(error, OSError):  # torch.save's "unexpected pos"
        try:
            code = errno.ENOSPC if shutil.disk_usage(root).free < (1 << 20) else None
        except OSError:
            code = None
    reason = os.strerror(code) if code is not None else str(error).splitlines()[0][:200]
    where = getattr(error, "filename", None) or final
    return CheckpointWriteError(
        code or errno.EIO,
        f"cannot write checkpoint {final}: {reason} ({where}); the last complete checkpoint "
        f"is still the one {root / 'latest'} names",
    )


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_checksum(state: dict) -> str:
    """sha256 of state.json's content (without the checksum field itself)."""
    body = {k: v for k, v in state.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# -- reading ------------------------------------------------------------------------------------


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder: ``path`` itself, or what its ``latest`` pointer names."""
    path = Path(path)
    if (path / "latest").exists():
        try:
            name = (path / "latest").read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path / 'latest'}: unreadable ({e})") from e
        if not name.startswith("iter-") or "/" in name or not (path / name).is_dir():
            raise CheckpointError(f"{path / 'latest'}: points to {name!r:.60}, not a checkpoint")
        path = path / name
    if not (path / "state.json").exists():
        raise CheckpointNotFoundError(f"no checkpoint in {str(path)!r} (state.json missing)")
    return path


def read_checkpoint(
    path: Path,
    *,
    learner: str,
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    check_extra: Callable[[dict[str, torch.Tensor]], str | None],
    reference: dict[str, str],
) -> tuple[dict, dict, dict, dict]:
    """(state, rng, optimizer state, extra tensors) of the checkpoint folder ``path``, every file
    checked for the learner class named ``learner``, its ``policy`` and ``optimizer``; nothing is
    loaded into them. ``check_extra(tensors)`` says what is wrong with the extra tensors (None:
    they fit). ``reference``: the learner's KL reference record
    (:meth:`~agents.policy.LMPolicy.reference_record`), which must be the run's. Raises
    :class:`CheckpointError` naming the file and the problem."""
    from safetensors.torch import load_file

    files = ("state.json", "model.safetensors", "rng.safetensors")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    state = read_checkpoint_state(path)
    file = path / "state.json"
    if state.get("save_optimizer") is False and not (path / "optimizer.pt").is_file():
        raise CheckpointError(
            f"{path}: a weights-only checkpoint (saved with save_optimizer=False, "
            f"--no-save-optimizer): it has no optimizer state, so the run cannot be resumed "
            f"exactly; evaluate it (textgym eval) or resume from a checkpoint with optimizer.pt"
        )
    if not (path / "optimizer.pt").is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: missing optimizer.pt")
    if any(k not in state for k in STATE_FIELDS):
        raise CheckpointError(f"{file}: missing fields (needs {', '.join(STATE_FIELDS)})")
    if state["learner"] != learner:
        raise CheckpointError(f"{file}: checkpoint is from {state['learner']}, not {learner}")
    _check_state_fields(file, state)
    check_model_file(path / "model.safetensors", policy)
    file = path / "rng.safetensors"
    try:
        rng = load_file(str(file))
    except Exception as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
    if "torch" not in rng or "generator" not in rng:
        raise CheckpointError(f"{file}: missing the 'torch'/'generator' RNG states")
    device = next(policy.parameters()).device
    for key, value in rng.items():  # tried on spare generators: resume sets them last
        if key == "cuda":
            continue
        try:
            spare = torch.Generator() if key == "torch" else torch.Generator(device=device)
            spare.set_state(value)
        except Exception as e:  # torch raises RuntimeError or TypeError for a bad state
            raise CheckpointError(
                f"{file}: {key!r} is not a torch RNG state ({str(e).splitlines()[0][:120]})"
            ) from None
    optim = _read_optimizer_state(path / "optimizer.pt", optimizer, device)
    file, extra = path / "extra.safetensors", {}
    if file.exists():
        try:
            extra = load_file(str(file), device=str(device))
        except Exception as e:
            raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
    problem = check_extra(extra)
    if problem:
        raise CheckpointError(f"{file}: {problem}")
    verify_checkpoint_files(path, state)  # last: the checks above name the problem better
    _check_reference(path, state, reference)
    return state, rng, optim, extra


def _check_state_fields(file: Path, state: dict) -> None:
    """state.json's counters, KL coefficient, best eval, extra state and numpy RNG have the types
    and values a learner can load (CheckpointError naming the field if not): resume loads them
    only after every file was checked, so a bad one must fail here, before anything changed."""

    def bad(key: str, what: str) -> CheckpointError:
        return CheckpointError(
            f"{file}: field {key!r} is {state[key]!r:.80}, not {what}; the file was edited or "
            f"written by something else: resume from another checkpoint"
        )

    counts = ("iteration", "episodes", "tokens", "skipped_updates", "evals_without_improvement")
    # failed_episodes: written since failed episodes are counted (older checkpoints: 0)
    for key in (*counts, *(("failed_episodes",) if "failed_episodes" in state else ())):
        value = state[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(key, "a count (an int >= 0)")
    if not _real_number(state["kl_coef"]) or not math.isfinite(state["kl_coef"]):
        raise bad("kl_coef", "a finite number")
    if state["best_eval"] is not None and not _real_number(state["best_eval"]):
        raise bad("best_eval", "a number or null")
    if not isinstance(state["extra"], dict):
        raise bad("extra", "a JSON object")
    try:  # what resume assigns to the learner's numpy Generator (PCG64), tried on a spare one
        np.random.default_rng(0).bit_generator.state = state["numpy_rng"]
    except Exception:  # numpy raises TypeError, ValueError or KeyError for a bad state
        raise bad("numpy_rng", "a numpy PCG64 bit generator state") from None


def _check_reference(path: Path, state: dict, own: dict[str, str]) -> None:
    """The checkpoint's KL reference (``state.json``'s ``reference``: origin and a weight
    fingerprint) must be ``own``: a reference rebuilt from another starting policy (e.g. the
    base model where the run had a warm-started one) would silently change what the KL penalty
    measures. Checkpoints without the record are not checked."""
    saved = state.get("reference")
    if not isinstance(saved, dict) or "fingerprint" not in saved:
        return
    if own["fingerprint"] != saved["fingerprint"]:
        raise CheckpointError(
            f"{path / 'state.json'}: the run's KL reference was {saved.get('origin')} "
            f"(fingerprint {saved['fingerprint']}), this learner's is {own['origin']} "
            f"(fingerprint {own['fingerprint']}): build the learner from the policy the run "
            f"started from (e.g. warm-start it the same way, or load those weights) and resume"
        )


def env_state_of(envs: Any) -> Any:
    """The training env's state for ``state.json``: its ``state_dict()`` (JSON-able; textgym's
    curriculum wrappers have one, and the other textgym wrappers pass it on), None without one."""
    return envs.state_dict() if hasattr(envs, "state_dict") else None


def restore_env_state(path: Path, state: dict, envs: Any, rank: int = 0) -> None:
    """Load the training env's state recorded in the checkpoint folder ``path`` (``state``: its
    checked state.json) into ``envs`` with ``load_state_dict``; under distributed training,
    rank ``rank``'s. A checkpoint with an env state and an env without one (or the reverse), or a
    state the env rejects, raise :class:`CheckpointError` and change nothing. A checkpoint
    written before env states were recorded loads as before (a warning if the env has a state:
    it keeps its own)."""
    file = path / "state.json"
    has_state = hasattr(envs, "state_dict") and hasattr(envs, "load_state_dict")
    if "env_state" not in state:
        if has_state:
            warnings.warn(
                f"{file} records no training env state (written before env states were): "
                f"the env ({type(envs).__name__}, e.g. a curriculum) keeps its own state",
                RuntimeWarning,
                stacklevel=3,
            )
        return
    saved, ranks = state["env_state"], state.get("env_state_ranks")
    if isinstance(ranks, list) and rank < len(ranks):
        saved = ranks[rank]
    if saved is None and has_state:
        raise CheckpointError(
            f"{file}: the run's training env had no state (no curriculum), this learner's env "
            f"({type(envs).__name__}) has one: resume with the training env the run had, "
            f"without the curriculum wrapper"
        )
    if saved is not None and not has_state:
        raise CheckpointError(
            f"{file}: the run's training env had a state ({saved!r:.120}), this learner's env "
            f"({type(envs).__name__}) has none: resume with the training env the run had (e.g. "
            f"wrapped in the same textgym.wrappers.VectorCurriculum)"
        )
    if saved is not None:
        try:
            envs.load_state_dict(saved)
        except (ValueError, TypeError, KeyError) as e:  # textgym's InvalidArgumentError
            raise CheckpointError(
                f"{file}: the run's training env state does not fit this learner's env: {e}"
            ) from e


def _read_optimizer_state(
    file: Path, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict:
    """``optimizer.pt``, loaded safely and checked against ``optimizer``'s parameters: the same
    groups, moment shapes that fit, finite moments."""
    try:  # weights_only: tensors and plain containers, never arbitrary objects
        optim = torch.load(file, map_location=device, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{file}: cannot be loaded safely (weights_only=True refuses anything but "
            f"tensors and plain containers, and the file may be truncated): {e}"
        ) from e
    own_groups = optimizer.param_groups
    groups = optim.get("param_groups") if isinstance(optim, dict) else None
    saved_state = optim.get("state") if isinstance(optim, dict) else None
    if (
        not isinstance(groups, list)
        or not isinstance(saved_state, dict)
        or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
        or [len(g["params"]) for g in groups] != [len(g["params"]) for g in own_groups]
    ):
        raise CheckpointError(
            f"{file}: optimizer state does not fit this learner's params (needs 'state' and "
            f"{len(own_groups)} 'param_groups' of {[len(g['params']) for g in own_groups]} params)"
        )
    ids = [i for g in groups for i in g["params"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or len(set(ids)) != len(
        ids
    ):
        raise CheckpointError(f"{file}: param_groups' 'params' must be distinct int ids")
    for number, (group, own) in enumerate(zip(groups, own_groups)):
        for key, value in group.items():
            if key == "params" or key not in own:
                continue
            if not _same_kind(value, own[key]):
                raise CheckpointError(
                    f"{file}: param_groups[{number}][{key!r}] is {value!r:.60}, this optimizer's "
                    f"is {own[key]!r:.60}: the file was edited or is from another optimizer"
                )
    # torch maps the saved ids, in order, onto this optimizer's params
    params = dict(zip(ids, [p for g in own_groups for p in g["params"]]))
    for index, st in saved_state.items():
        if index not in params or not isinstance(st, dict):
            raise CheckpointError(
                f"{file}: state of parameter {index!r:.40} does not fit this learner's params "
                f"(ids {min(ids, default=0)}..{max(ids, default=0)})"
            )
        shape = tuple(params[index].shape)
        for key, value in st.items():
            if key == "step":
                number = value
                if isinstance(value, torch.Tensor):
                    number = value.item() if value.numel() == 1 else None
                if not (_real_number(number) and math.isfinite(number) and number >= 0):
                    raise CheckpointError(f"{file}: step of parameter {index} is {value!r:.60}")
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(
                    f"{file}: {key} of parameter {index} is {value!r:.60}, not a tensor"
                )
            if tuple(value.shape) != shape:
                raise CheckpointError(
                    f"{file}: {key} of parameter {index} has shape {tuple(value.shape)}, "
                    f"the parameter {shape}"
                )
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise CheckpointError(
                    f"{file}: {key} of parameter {index} holds NaN/inf; resume from an "
                    f"earlier checkpoint"
                )
    return optim


def _real_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(saved: Any, own: Any) -> bool:
    """A saved optimizer hyperparameter can stand where this optimizer has ``own``: a finite
    number for a number, a bool for a bool, a pair of numbers for ``betas``, ..."""
    if isinstance(own, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == own.shape
    if own is None:  # foreach, fused: None or a bool
        return saved is None or isinstance(saved, bool)
    if isinstance(own, bool):
        return isinstance(saved, bool)
    if _real_number(own):
        if isinstance(saved, torch.Tensor):
            return saved.numel() == 1 and bool(torch.isfinite(saved).all())
        return _real_number(saved) and math.isfinite(saved)
    if isinstance(own, (tuple, list)):
        return (
            isinstance(saved, (tuple, list))
            and len(saved) == len(own)
            and all(_same_kind(a, b) for a, b in zip(saved, own))
        )
    return type(saved) is type(own)


def read_checkpoint_state(path: Path) -> dict:
    """A checkpoint folder's state.json, checked: a JSON object whose checksum matches
    (checkpoints written before checksums were recorded are read without that check).
    Raises :class:`CheckpointError`."""
    file = Path(path) / "state.json"
    try:
        state = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: missing fields (not a JSON object)")
    if "checksum" in state and state["checksum"] != _state_checksum(state):
        raise CheckpointError(
            f"{file}: checksum mismatch: the file was changed or corrupted after it was saved; "
            f"resume from an earlier checkpoint"
        )
    return state


def verify_checkpoint_files(path: Path, state: dict) -> None:
    """Every file state.json lists has the sha256 it was saved with (CheckpointError if not)."""
    hashes = state.get("files")
    for name, digest in hashes.items() if isinstance(hashes, dict) else ():
        other = Path(path) / name
        if other.is_file() and _sha256(other) != digest:
            raise CheckpointError(
                f"{other}: checksum mismatch: the file was changed or corrupted after it was "
                f"saved; resume from an earlier checkpoint"
            )


def check_model_file(file: Path, policy: nn.Module) -> None:
    """``model.safetensors`` fits ``policy`` (names and shapes) and holds only finite weights;
    raises :class:`CheckpointError` naming the file and the problem. Nothing is loaded into the
    policy."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own SafetensorError on bad headers
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
    own = policy.state_dict()
    tied: dict[int, list[str]] = {}  # names that share one tensor (tied weights)
    for k, v in own.items():
        if v.numel():
            tied.setdefault(v.data_ptr(), []).append(k)
    twice = [names for names in tied.values() if sum(n in shapes for n in names) > 1]
    if twice:
        raise CheckpointError(
            f"{file}: holds tied weights under several names ({', '.join(twice[0])}): this "
            f"model stores one tensor for them, so the file was not written by save_model; "
            f"save it again with one of the names"
        )
    present = {own[k].data_ptr() for k in shapes if k in own}
    unexpected = sorted(set(shapes) - set(own))
    missing = sorted(k for k in set(own) - set(shapes) if own[k].data_ptr() not in present)
    wrong = [
        f"{k}: {shapes[k]} in the file, {tuple(own[k].shape)} here"
        for k in shapes
        if k in own and shapes[k] != tuple(own[k].shape)
    ]
    if unexpected or missing or wrong:
        detail = "; ".join(
            [f"shape mismatch ({', '.join(wrong[:3])})"] * bool(wrong)
            + [f"unexpected tensors {unexpected[:3]}"] * bool(unexpected)
            + [f"missing tensors {missing[:3]}"] * bool(missing)
        )
        raise CheckpointError(f"{file}: does not fit this policy's model: {detail}")
    try:  # one tensor at a time: no second copy of the model in memory
        with safe_open(str(file), "pt") as f:
            for key in f.keys():  # noqa: SIM118
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise CheckpointError(
                        f"{file}: tensor {key!r} holds NaN/inf weights: the run diverged or the "
                        f"file is corrupted; use an earlier checkpoint"
                    )
    except CheckpointError:
        raise
    except Exception as e:  # a truncated data section
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
