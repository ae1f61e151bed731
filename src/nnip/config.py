"""Typed, nested configuration loaded from YAML.

A run is described by one `Config`: ``data``, ``model``, ``loss``, ``train`` and
``output`` sections, each a dataclass. Loading checks every key (unknown keys are errors
with a did-you-mean suggestion), converts types, and checks ranges with units in the
message. ``--set section.key=value`` overrides apply on top of a file. Data-derived
values (E0 per element, energy scale, average neighbour count) are written back into the
resolved config, which is saved in the run directory, every checkpoint and the model file.

Example YAML::

    data:
      train: ../shared/data/mlearn/Si/train.xyz
      test: ../shared/data/mlearn/Si/test.xyz
      validation_fraction: 0.1
    model:
      arch: schnet
      cutoff: 5.0
      params: {n_features: 64}
    train:
      epochs: 200
      lr: 0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from nnip.errors import ConfigError

__all__ = ["DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "OutputConfig", "Config",
           "load_config", "config_from_dict", "config_to_dict", "apply_overrides"]


@dataclass
class DataConfig:
    """Where the labelled structures come from and how they are split.

    Attributes:
        train: training file(s) (extxyz, any ASE format, DeePMD folder, n2p2 input.data).
        validation: validation file(s); when absent, ``validation_fraction`` of the
            training structures is held out (chosen with ``split_seed``).
        test: test file(s), evaluated once at the end; or ``test_fraction`` of training.
        validation_fraction: fraction of training structures held out for validation.
        test_fraction: fraction of training structures held out for testing.
        split_seed: seed of the random split.
        energy_key, forces_key, stress_key, weight_key: label names in the files.
        use_stress: train on stress where frames have it.
    """

    train: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    validation_fraction: float = 0.1
    test_fraction: float = 0.0
    split_seed: int = 0
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    weight_key: str = "weight"
    use_stress: bool = True

    def check(self) -> None:
        """Range checks."""
        if not self.train:
            raise ConfigError("data.train: give at least one training file")
        _in_range("data.validation_fraction", self.validation_fraction, 0.0, 0.9)
        _in_range("data.test_fraction", self.test_fraction, 0.0, 0.9)
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.validation_fraction + data.test_fraction must be < 1")


@dataclass
class ModelConfig:
    """Architecture and data-derived constants.

    Attributes:
        arch: architecture name (``painn``, ``mace``, ``nequip``, ``schnet``); default
            ``mace``, the recommended model (lowest test force errors in the side-by-side
            benchmark, benchmarks/accuracy; with ``train.compile`` over 2x faster than
            mace-torch, benchmarks/speed).
        cutoff: neighbour cutoff in Å.
        dtype: ``float64`` (default) or ``float32``.
        params: hyperparameters of the architecture (see its config dataclass).
        e0: per-element reference energies in eV; empty means fit by least squares.
        scale: energy scale of the learned term in eV; 0 means from data (RMS force
            times 1 Å, or the energy-per-atom spread when there are no forces).
        zbl: add ZBL nuclear repulsion, switched off at the covalent bond length
            (`nnip.physics.repulsion.ZBL`): atoms pushed together repel even where the
            data has no such configurations.
        d3: functional whose DFT-D3(BJ) dispersion to add (e.g. ``pbe``; empty: none),
            or options of `nnip.physics.dispersion.D3Dispersion` (``xc``, ``damping``,
            ``cutoff``, ``cn_cutoff`` in Å, ``smoothing``); needs torch-dftd. Train on
            data without dispersion and add it back, or the reverse.
        electrostatics: Coulomb energy of charges predicted by a network
            (`nnip.physics.electrostatics`); empty: none, ``{}`` written as ``true``
            for the defaults, or options ``arch`` (``shared``, the default: charges read
            from the model's own features; or an architecture for a separate charge
            network, the default when ``params`` is given), ``params`` (that network's
            hyperparameters, default ``params``), ``smearing`` (Gaussian
            width in Å, default 1), ``method`` (``auto``, ``ewald``, ``pme``, ``direct``),
            ``charge_model`` (``local``, the default, or ``qeq``: charge equilibration)
            and, with ``qeq``, ``hardness`` (initial per-element hardness, eV/e², default
            5) and ``qeq_energy`` (``coulomb``: the Coulomb energy of the charges, as in
            the 4G-HDNNP; ``full``: the whole charge-equilibration energy).
            ``charge_energy: true`` adds a charge-dependent local energy
            ``a_i q_i + b_Z q_i²`` with ``a_i`` read from the model's features (as the
            4G-HDNNP's short-range energies take the charges as input; shared readout
            only); ``charge_energy: mlp`` makes it a small network of the atom's
            features and its charge. Both are carried by ``nnip export`` and LAMMPS.
            Charges sum to each structure's ``total_charge`` and are trained against
            reference charges (``ref_charges``) where the data has them.
    """

    arch: str = "mace"
    cutoff: float = 5.0
    dtype: Literal["float64", "float32"] = "float64"
    params: dict[str, Any] = field(default_factory=dict)
    e0: dict[str, float] = field(default_factory=dict)
    scale: float = 0.0
    zbl: bool = False
    d3: str | dict[str, Any] = ""
    electrostatics: bool | dict[str, Any] = False

    def check(self) -> None:
        """Range checks."""
        _in_range("model.cutoff", self.cutoff, 1.0, 20.0, unit="Å")
        if self.scale < 0:
            raise ConfigError(f"model.scale must be >= 0 eV (0: from data), got {self.scale}")
        if isinstance(self.d3, dict):
            known = ("xc", "damping", "cutoff", "cn_cutoff", "smoothing")
            for key in self.d3:
                if key not in known:
                    raise ConfigError(f"model.d3.{key}: unknown option{_suggest(key, known)} "
                                      f"(options: {', '.join(known)})")
            from nnip.physics.dispersion import DAMPINGS, SMOOTHINGS

            choices = {"damping": DAMPINGS, "smoothing": SMOOTHINGS}
            for key, allowed in choices.items():
                if key in self.d3 and self.d3[key] not in allowed:
                    raise ConfigError(f"model.d3.{key} must be one of {allowed}, "
                                      f"got {self.d3[key]!r}")
            for key in ("cutoff", "cn_cutoff"):
                if key in self.d3:
                    _in_range(f"model.d3.{key}", self.d3[key], 1.0, 100.0, unit="Å")


@dataclass
class LossConfig:
    """Weighted sum of per-property terms.

    Energies enter per atom (eV/atom), forces per component (eV/Å), stress per
    component (eV/Å^3). Structures without a label do not enter that term. Per-atom
    energy errors are typically ~10x smaller than force errors, hence the default
    energy weight 10 (on mlearn Si this gave the best energy/force balance of weights
    E:F = 0.1, 10 and 100 in equal training time).

    Attributes:
        energy_weight, forces_weight, stress_weight: weights of each term.
        kind: ``mse`` or ``huber``.
        huber_delta: Huber threshold (in each property's unit).
        final_energy_weight: energy weight of a final stage (0: no final stage). As in
            MACE's second stage, training first learns forces and then, over the last
            ``final_fraction`` of the run (of the epochs, or of ``train.time_limit_min``
            when that ends first), weights energies more; the best-model selection
            restarts at the switch because the validation loss changes with it.
        final_fraction: fraction of the run spent in the final stage.
        charges_first_fraction: fraction of the run, at its start, spent on the charge
            term alone (energy, force and stress weights 0), for models with an
            electrostatics term trained on reference charges: the charges are fitted
            first, as the 4G-HDNNP fits its charge network before the short-range
            energies, so that a charge-dependent energy (``charge_energy``) starts from
            charges that already carry the non-local transfer. 0 (default): off. The
            best-model selection restarts when the stage ends.
        charges_weight: weight of the per-atom charge error (e^2) for models with an
            electrostatics term, on structures with reference charges.
        element_weights: element symbol -> factor on that element's atoms in the per-atom
            terms (forces and charges); unlisted elements 1. For a few atoms that matter
            among many (a dopant, an adsorbate: e.g. ``{Au: 20}`` for 2 Au atoms among
            110), whose errors a per-atom mean would otherwise drown. The terms stay
            weighted means, so raising one element shifts weight from the others.
    """

    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 10.0
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = 0.01
    final_energy_weight: float = 0.0
    final_fraction: float = 0.2
    charges_first_fraction: float = 0.0
    charges_weight: float = 10.0
    element_weights: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        """Range checks."""
        from ase.data import atomic_numbers

        for symbol, weight in self.element_weights.items():
            if symbol not in atomic_numbers or symbol == "X":
                raise ConfigError(f"loss.element_weights: {symbol!r} is not an element symbol")
            if not (isinstance(weight, (int, float)) and weight >= 0):
                raise ConfigError(f"loss.element_weights[{symbol!r}] must be a number >= 0, "
                                  f"got {weight!r}")
        _in_range("loss.final_fraction", self.final_fraction, 0.0, 1.0)
        _in_range("loss.charges_first_fraction", self.charges_first_fraction, 0.0, 0.9)
        if self.charges_first_fraction > 0 and self.charges_weight <= 0:
            raise ConfigError("loss.charges_first_fraction trains the charges first and "
                              "needs loss.charges_weight > 0")
        for name in ("energy_weight", "forces_weight", "stress_weight", "final_energy_weight",
                     "charges_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.huber_delta <= 0:
            raise ConfigError(f"loss.huber_delta must be > 0, got {self.huber_delta}")


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training set.
        batch_size: structures per step (per step of all processes together when
            training with ``torchrun``).
        batch_atoms: when > 0, batches are cut by this budget of atoms instead of
            ``batch_size`` structures (consecutive structures of the shuffled order until
            the next would exceed it; a larger structure trains alone), so that data
            sets with large cells do not run out of memory.
        batch_edges: when > 0, also cap each batch at this many neighbour-list edges
            (directed pairs within the cutoff), the quantity that sets the memory of
            message passing; for structures in memory only (a store's edge counts are not
            known before its neighbour lists are built: use ``batch_atoms``).
        max_steps: stop after this many optimizer steps (0: no limit); like the time
            limit, honoured inside an epoch.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``plateau`` (halve on a stalled validation loss), ``cosine`` (from
            ``lr`` down to ``min_lr`` over the run: over ``epochs``, or over
            ``time_limit_min`` when that ends first, so a run with a time budget
            anneals to its end) or ``none``.
        plateau_patience: epochs without improvement before the plateau step.
        plateau_factor: learning-rate factor of the plateau step.
        min_lr: learning-rate floor.
        ema_decay: exponential moving average of the weights (0 disables); the EMA
            weights are validated and saved.
        early_stopping_patience: stop after this many epochs without a better
            validation loss (0 disables).
        grad_clip: clip the gradient norm (0 disables).
        seed: seed of weight initialisation and shuffling.
        checkpoint_every: write a checkpoint every this many steps (and at every epoch
            end).
        time_limit_min: stop training after this many minutes, also inside an epoch (0:
            no limit); the best validated (or, before any validation, the current)
            weights are the result, and a rerun with a longer limit resumes.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        threads: torch CPU threads during training (0: keep the caller's setting);
            the caller's thread count is restored when `nnip.train` returns.
        compile: compute forces and stress through ``torch.func`` and fuse the training
            step with ``torch.compile`` (`nnip.models.functional.FunctionalForces`):
            1.4–3.6x faster steps (PaiNN most) after a compilation of a minute or two at
            the first step, so worth it for runs of ten minutes or more; the same weights
            as uncompiled training. A model that cannot be compiled trains uncompiled.
        committee: number of models trained (seeds ``seed``, ``seed + 1``, ...) and saved
            as one `Committee` model file with uncertainties (1: a single model).
        bootstrap: committee members train on bootstrap resamples of the training set
            (with replacement) instead of all of it.
        init_from: model file whose learned weights start the training (warm start, e.g.
            the previous active-learning iteration; member k of a committee starts from
            member k of a committee file); E0 and the energy scale come from the data.
    """

    epochs: int = 100
    batch_size: int = 4
    batch_atoms: int = 0
    batch_edges: int = 0
    max_steps: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    ema_decay: float = 0.99
    early_stopping_patience: int = 0
    grad_clip: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100
    time_limit_min: float = 0.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    compile: bool = False
    committee: int = 1
    bootstrap: bool = False
    init_from: str = ""

    def check(self) -> None:
        """Range checks."""
        for name in ("epochs", "batch_size", "checkpoint_every", "committee"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        _in_range("train.lr", self.lr, 1e-8, 1.0)
        _in_range("train.ema_decay", self.ema_decay, 0.0, 0.99999)
        _in_range("train.plateau_factor", self.plateau_factor, 0.01, 0.99)
        for name in ("batch_atoms", "batch_edges", "max_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.time_limit_min < 0:
            raise ConfigError(f"train.time_limit_min must be >= 0 min, got {self.time_limit_min}")


@dataclass
class OutputConfig:
    """Where results go.

    Attributes:
        run_dir: run directory (config, checkpoints, logs, plots, model file).
        model_file: name of the final model file inside ``run_dir``.
        license: license string stored in the model file (e.g. the data's license).
        plots: write learning curves and parity plots as PNG.
    """

    run_dir: str = "run"
    model_file: str = "model.nnip"
    license: str | None = None
    plots: bool = True


@dataclass
class Config:
    """A complete training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def check(self) -> None:
        """Check every section."""
        for section in (self.data, self.model, self.loss, self.train):
            section.check()
        if self.loss.charges_first_fraction > 0 and not self.model.electrostatics:
            raise ConfigError("loss.charges_first_fraction trains predicted charges first; "
                              "the model has none (set model.electrostatics)")


# ---------------------------------------------------------------------------- loading

def _in_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    if not low <= value <= high:
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be in [{low}, {high}]{unit}, got {value}{unit}")


def _suggest(key: str, known: Sequence[str]) -> str:
    hint = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(known)}"


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise `ConfigError`."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: cannot use {value!r} as {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}" +
                              _suggest(str(value), [str(a) for a in args]))
        return value
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_convert(v, args[0], f"{where}[{k}]") for k, v in enumerate(items)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:  # PyYAML (YAML 1.1) reads 5e-4 without a dot as a string
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                hint is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover


def _from_dict(cls: type, values: Any, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(f"unknown config key {name!r}" + _suggest(str(key), known))
        kwargs[key] = _convert(value, hints[key], name)
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and check a `Config` from nested dicts (e.g. parsed YAML)."""
    config = _from_dict(Config, values, "")
    config.check()
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dict of a config (YAML- and `torch.load(weights_only=True)`-safe)."""
    return dataclasses.asdict(config)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to nested dicts.

    Example: ``apply_overrides(d, ["train.lr=1e-3", "model.params.n_features=64"])``.
    """
    out = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config file, apply overrides, and check it.

    Relative data paths are resolved against the config file's directory.
    """
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    values = apply_overrides(values, overrides)
    config = config_from_dict(values)
    base = path.resolve().parent
    for name in ("train", "validation", "test"):
        files = getattr(config.data, name)
        setattr(config.data, name, [str((base / f).resolve()) if not Path(f).is_absolute()
                                    else f for f in files])
    return config
