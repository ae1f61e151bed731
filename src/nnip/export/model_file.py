"""The ``*.nnip`` model file: weights, the recipe to rebuild the model, and provenance.

A model file is one `torch.save` of a plain dict holding only tensors, ``str``, ``int``,
``float``, ``bool``, ``None`` and lists/dicts of these, so it loads with
``torch.load(path, weights_only=True)``; no module or class is ever pickled (a pickled
module breaks when the code moves and runs arbitrary code when loaded). Keys:

- ``format`` = ``"nnip-model"``, ``format_version`` (int, `FORMAT_VERSION`);
- ``spec``: how to rebuild the model with `nnip.models.build` (``arch``, resolved
  ``config``, ``elements``, ``cutoff`` in Å, energy ``scale`` in eV);
- ``model_dtype`` (``"float64"``/``"float32"``), ``units`` (`nnip.units.UNITS`),
  ``type_map`` (atomic numbers in type order), ``e0`` (``{symbol: eV}`` or None),
  ``n_parameters``;
- ``state_dict`` (CPU tensors);
- ``provenance``: nnip/torch/e3nn/python versions, git commit of the nnip source tree
  (and whether it had uncommitted changes), UTC date, plus the caller's entries, by
  convention ``training_data`` = `data_fingerprint` of the training set. No user or
  host names are recorded;
- ``training_config`` (dict or None) and ``license`` (str or None).

Files are written atomically (temporary file in the same folder, fsync, `os.replace`),
so a crash never leaves a half-written model under the final name.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers as _Z
from ase.data import chemical_symbols

from nnip._files import atomic_torch_save
from nnip.errors import ConfigError, ModelFileError
from nnip.models.potential import Potential
from nnip.units import UNITS

__all__ = ["FORMAT_VERSION", "save_model", "load_model", "read_metadata",
           "data_fingerprint", "format_metadata"]

FORMAT_VERSION = 1
"""Version of the model-file layout written by this nnip; files up to it are readable."""

FORMAT_NAME = "nnip-model"

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_LABELS = ("energy", "forces", "stress")


# --------------------------------------------------------------------------- save


def save_model(
    model: Potential,
    path: str | os.PathLike,
    *,
    provenance: Mapping[str, Any] | None = None,
    training_config: Mapping[str, Any] | Any | None = None,
    license: str | None = None,
) -> Path:
    """Write a potential to a ``*.nnip`` model file (atomically).

    Args:
        model: a potential made by `nnip.models.build` (its ``spec`` rebuilds it).
        path: destination; an existing file is replaced.
        provenance: extra provenance entries (plain data), e.g.
            ``{"training_data": data_fingerprint(frames)}``; they are merged over the
            automatic ones (versions, git commit, date).
        training_config: the resolved training configuration (dict or dataclass).
        license: license of the weights, e.g. ``"CC-BY-4.0"``.

    Returns:
        The path written.

    Raises:
        ModelFileError: the model has no rebuild spec, or a metadata value is not
            plain data (str, int, float, bool, None, lists, dicts, tensors).

    """
    path = Path(path)
    spec = dict(getattr(model, "spec", None) or {})
    if "arch" not in spec:
        raise ModelFileError(f"{path}: cannot save a model without a build spec (field "
                             "'spec.arch'); make it with nnip.models.build")
    head = model.members[0] if hasattr(model, "members") else model  # a Committee's first
    reference = head.terms["reference"] if "reference" in head.terms else None
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": _plain(spec, "spec", path),
        "model_dtype": str(model.model_dtype).removeprefix("torch."),
        "units": dict(UNITS),
        "type_map": [int(z) for z in model.type_map.atomic_numbers],
        "e0": reference.as_dict() if hasattr(reference, "as_dict") else None,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "provenance": {**_auto_provenance(),
                       **_plain(dict(provenance or {}), "provenance", path)},
        "training_config": _plain(training_config, "training_config", path),
        "license": None if license is None else str(license),
    }
    atomic_torch_save(payload, path)
    return path


def _plain(value: Any, where: str, path: Path) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ModelFileError(f"{path}: field '{where}' has key {key!r} of type "
                                     f"{type(key).__name__}; keys must be str or int")
            out[key] = _plain(item, f"{where}.{key}", path)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{k}]", path) for k, item in enumerate(value)]
    raise ModelFileError(f"{path}: field '{where}' is a {type(value).__name__}; a model file "
                         "stores only str, int, float, bool, None, lists, dicts and tensors")


def _auto_provenance() -> dict[str, Any]:
    """Versions, source commit and date; nothing that identifies a user or host."""
    import nnip

    try:
        import e3nn

        e3nn_version: str | None = str(e3nn.__version__)
    except Exception:  # e3nn is optional; any import failure means "not available"
        e3nn_version = None
    commit, dirty = _git_state(Path(nnip.__file__).resolve().parent)
    return {
        "nnip_version": str(nnip.__version__),
        "git_commit": commit,
        "git_dirty": dirty,
        "torch_version": str(torch.__version__),
        "e3nn_version": e3nn_version,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_state(package_dir: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the nnip package, or (None, None).

    Only when nnip's own files are tracked: an installed nnip inside some other
    repository (e.g. a virtual environment in a user's project) must not report that
    project's commit.
    """
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package_dir) is None:
        return None, None
    commit = _git(["rev-parse", "HEAD"], package_dir)
    if commit is None:
        return None, None
    status = _git(["status", "--porcelain", "--", "."], package_dir)
    return commit, None if status is None else bool(status)


# --------------------------------------------------------------------------- load


def _read(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Load and check the raw dict of a model file."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a model file" if path.is_dir() else "no such model file"
        raise ModelFileError(f"{path}: {what}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files: report them all alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(f"{path}: not a readable nnip model file (truncated, corrupted "
                             f"or not a torch file): {type(err).__name__}: {first}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ModelFileError(f"{path}: not an nnip model file (field 'format' is {got!r}, "
                             f"expected {FORMAT_NAME!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: field 'format_version' is {version!r}, expected an int")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: made by a newer nnip (format {version}); this nnip "
                             f"reads format <= {FORMAT_VERSION}: upgrade nnip")
    for key, kind in (("spec", dict), ("state_dict", dict), ("model_dtype", str)):
        if not isinstance(raw.get(key), kind):
            raise ModelFileError(f"{path}: field '{key}' is missing or not a {kind.__name__}")
    for key in ("arch", "config", "elements", "cutoff"):
        if key not in raw["spec"]:
            raise ModelFileError(f"{path}: field 'spec.{key}' is missing")
    return path, raw


def _as_dtype(dtype: torch.dtype | str | None, default: str, path: Path) -> torch.dtype:
    if dtype is None:
        dtype = default
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in _DTYPES:
            raise ModelFileError(f"{path}: dtype {dtype!r} not in {sorted(_DTYPES)} (field "
                                 "'model_dtype' or the dtype argument)")
        return _DTYPES[dtype.removeprefix("torch.")]
    if dtype not in _DTYPES.values():
        raise ModelFileError(f"{path}: dtype {dtype} is not float32 or float64")
    return dtype


def load_model(
    path: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> Potential:
    """Rebuild a potential from a ``*.nnip`` model file.

    Args:
        path: the model file.
        device: where to put the model (default CPU).
        dtype: model dtype (default: the dtype it was saved in). Reference energies
            stay float64 whatever the dtype.

    Returns:
        The potential in eval mode, with exactly the saved weights and E0.

    Raises:
        ModelFileError: (a `ModelError`) missing, truncated or corrupted file; not an
            nnip model; made by a newer nnip; unknown architecture or option; or
            weights that do not match the architecture (keys or shapes named).

    """
    from nnip.models import MODELS, build

    path, raw = _read(path)
    spec = raw["spec"]
    target = _as_dtype(dtype, raw["model_dtype"], path)
    if spec["arch"] not in MODELS:
        raise ModelFileError(f"{path}: field 'spec.arch' is {spec['arch']!r}, an architecture "
                             f"this nnip does not have (it has {sorted(MODELS)}); upgrade "
                             "nnip or install the package that provides it")
    try:
        # Build in the target dtype and let load_state_dict cast the weights as it copies:
        # a later model.to(dtype) would round the float64 E0 buffer through float32.
        def member(config: Mapping[str, Any], electrostatics: Any) -> Potential:
            return build(spec["arch"], spec["elements"], spec["cutoff"], dtype=target,
                         scale=float(spec.get("scale", 1.0)), seed=0,
                         zbl=bool(spec.get("zbl", False)), d3=spec.get("d3") or "",
                         electrostatics=electrostatics, **dict(config))

        if spec.get("committee"):
            from nnip.models.committee import Committee

            k = int(spec["committee"])
            configs = spec.get("member_configs") or [spec["config"]] * k
            configs = [_compatible(spec["arch"], c) for c in configs]
            charges = spec.get("member_electrostatics") or [spec.get("electrostatics")] * k
            model = Committee([member(c, e) for c, e in zip(configs, charges)])
        else:
            model = member(_compatible(spec["arch"], spec["config"]), spec.get("electrostatics"))
    except (ConfigError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot rebuild the model from field 'spec': "
                             f"{err}") from err
    _load_weights(model, raw["state_dict"], path)
    model.eval()
    return model.to(device=torch.device(device or "cpu"))


def _compatible(arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Options added after a file was written take the value that file was trained with."""
    config = dict(config)
    if arch == "painn":
        config.setdefault("vector_norm", "paper")  # files from before the smooth norm
    return config


def _load_weights(model: Potential, state: Mapping[str, Any], path: Path) -> None:
    """``load_state_dict(strict=True)`` with mismatches named in a `ModelFileError`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{name}: {_short(keys)}" for name, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape (file vs model)", wrong)) if keys]
        raise ModelFileError(f"{path}: field 'state_dict' does not match architecture "
                             f"{model.spec.get('arch')!r}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as err:
        raise ModelFileError(f"{path}: field 'state_dict' cannot be loaded: {err}") from err


def _short(items: Sequence[str], limit: int = 5) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a model file except the weights (for ``nnip info``).

    Returns:
        The file's dict without ``state_dict``, plus ``path`` (str).

    Raises:
        ModelFileError: as `load_model` does for unreadable or foreign files.

    """
    path, raw = _read(path)
    meta = {k: v for k, v in raw.items() if k != "state_dict"}
    meta["path"] = str(path)
    return meta


# --------------------------------------------------------------------------- data


def _update(digest: Any, name: str, array: np.ndarray) -> None:
    """Hash a named array with its shape, so that no two layouts collide."""
    digest.update(f"{name}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())


def _floats(values: Any) -> np.ndarray:
    # Rounded to 1e-8 so that last-bit noise (e.g. from a file round trip) does not change
    # the hash; "+ 0.0" turns -0.0 into 0.0. Little-endian float64 whatever the machine.
    return (np.round(np.asarray(values, dtype=np.float64), 8) + 0.0).astype("<f8")


def data_fingerprint(frames: Sequence[Atoms]) -> dict[str, Any]:
    """A hash and a summary of a data set, to record which data trained a model.

    The SHA-256 covers, per structure and in order: atomic numbers, positions (Å),
    cell (Å), pbc, and the labels present in ``atoms.calc.results``: energy (eV),
    forces (eV/Å), stress (eV/Å^3, Voigt). Floats are rounded to 1e-8 first.

    Args:
        frames: the structures (labels as `nnip.data.read` leaves them).

    Returns:
        ``{"sha256": hex, "n_structures": int, "n_atoms": int,
        "counts_per_element": {symbol: atoms}, "labels": {"energy": n, "forces": n,
        "stress": n}}``; elements in order of atomic number, labels counted per
        structure. For an on-disk store (`nnip.data.store.FrameStore`) the hash covers
        the store's own hash and the indices of the structures used, and the record
        also names the store.

    """
    if hasattr(frames, "fingerprint"):  # a `nnip.data.store.FrameStore`: its own hash
        return frames.fingerprint()
    digest = hashlib.sha256(b"nnip-data-fingerprint-v1")
    counts: dict[int, int] = {}
    labels = dict.fromkeys(_LABELS, 0)
    n_atoms = 0
    for atoms in frames:
        numbers = np.asarray(atoms.numbers, dtype="<i8")
        digest.update(b"frame")
        _update(digest, "numbers", numbers)
        _update(digest, "positions", _floats(atoms.positions))
        _update(digest, "cell", _floats(atoms.cell.array))
        _update(digest, "pbc", np.asarray(atoms.pbc, dtype=np.uint8))
        results = atoms.calc.results if atoms.calc is not None else {}
        for name in _LABELS:
            if results.get(name) is None:
                continue
            value = np.asarray(results[name], dtype=np.float64)
            if name == "stress" and value.shape == (3, 3):
                value = value.reshape(9)[[0, 4, 8, 5, 2, 1]]  # Voigt xx yy zz yz xz xy
            _update(digest, name, _floats(value))
            labels[name] += 1
        n_atoms += len(numbers)
        for z, n in zip(*np.unique(numbers, return_counts=True)):
            counts[int(z)] = counts.get(int(z), 0) + int(n)
    return {
        "sha256": digest.hexdigest(),
        "n_structures": len(frames),
        "n_atoms": n_atoms,
        "counts_per_element": {chemical_symbols[z]: counts[z] for z in sorted(counts)},
        "labels": labels,
    }


# --------------------------------------------------------------------------- format


def _is_fingerprint(value: Any) -> bool:
    return isinstance(value, Mapping) and "sha256" in value and "counts_per_element" in value


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    return str(value)


def _rows(mapping: Mapping[str, Any], indent: str = "  ", prefix: str = "") -> list[str]:
    """``key  value`` lines of a nested mapping, nested keys joined with dots."""
    flat: list[tuple[str, str]] = []

    def walk(node: Mapping[str, Any], head: str) -> None:
        for key, value in node.items():
            name = f"{head}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, f"{name}.")
            else:
                flat.append((name, _value(value)))

    walk(mapping, prefix)
    width = max((len(k) for k, _ in flat), default=0)
    return [f"{indent}{k:<{width}}  {v}" for k, v in flat]


def _fingerprint_lines(title: str, fp: Mapping[str, Any]) -> list[str]:
    counts = ", ".join(f"{s} {n}" for s, n in fp.get("counts_per_element", {}).items())
    labels = ", ".join(f"{k} {n}" for k, n in fp.get("labels", {}).items())
    return [f"{title}",
            f"  structures  {fp.get('n_structures')} ({fp.get('n_atoms')} atoms)",
            f"  elements    {counts or '-'}",
            f"  labels      {labels or '-'}",
            f"  sha256      {fp.get('sha256')}"]


def format_metadata(meta: Mapping[str, Any]) -> str:
    """A human-readable summary of `read_metadata`'s dict (what ``nnip info`` prints).

    Args:
        meta: the metadata of a model file.

    Returns:
        Plain multi-line text: model, E0, config, provenance, data, training config.

    """
    spec = meta.get("spec", {})
    elements = list(spec.get("elements", []))
    zs = [_Z.get(s, "?") for s in elements]
    n_params = meta.get("n_parameters")
    e0 = meta.get("e0") or {}
    license_text = meta.get("license") or "(none given)"
    head = {
        "format": f"{meta.get('format')} version {meta.get('format_version')}",
        "architecture": spec.get("arch") + (f" (committee of {spec['committee']})"
                                            if spec.get("committee") else ""),
        "elements": f"{', '.join(elements)} (Z = {', '.join(map(str, zs))})",
        "cutoff": f"{_value(spec.get('cutoff'))} Å",
        "dtype": meta.get("model_dtype"),
        "parameters": f"{n_params:,}" if isinstance(n_params, int) else "?",
        "energy scale": f"{_value(spec.get('scale'))} eV",
        "E0 (eV)": ", ".join(f"{s} {_value(v)}" for s, v in e0.items()) or "-",
        "license": license_text,
    }
    lines = [f"nnip model {meta.get('path', '')}".rstrip(), *_rows(head)]
    lines += ["config" + (" (member 0)" if spec.get("committee") else ""),
              *_rows(spec.get("config", {}))]
    provenance = dict(meta.get("provenance") or {})
    data = {k: provenance.pop(k) for k in list(provenance) if _is_fingerprint(provenance[k])}
    if provenance:
        lines += ["provenance", *_rows(provenance)]
    for key, fp in data.items():
        lines += _fingerprint_lines(key.replace("_", " "), fp)
    if not any(k == "training_data" for k in data):
        lines.append("training data  (not recorded)")
    units = meta.get("units")
    if units:
        lines.append("units  " + ", ".join(f"{k} {v}" for k, v in units.items()))
    training = meta.get("training_config")
    if training:
        lines += ["training config", *_rows(training)]
    return "\n".join(lines)
