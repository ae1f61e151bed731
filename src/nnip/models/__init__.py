"""Model architectures and the `build` entry point.

``MODELS`` maps a short name to ``(config dataclass, energy-term module)``; every
architecture is an energy term ``graph -> per-atom energy`` built as
``Module(type_map, cutoff, config)``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnip.errors import ConfigError
from nnip.models.mace import MACE, MACEConfig
from nnip.models.nequip import NequIP, NequIPConfig
from nnip.models.painn import PaiNN, PaiNNConfig
from nnip.models.potential import Potential, PotentialOutput, Scaled
from nnip.models.schnet import SchNet, SchNetConfig
from nnip.nn.embedding import TypeMap
from nnip.nn.mlp import MLP
from nnip.physics.reference import ReferenceEnergies

__all__ = ["MODELS", "build", "Committee", "Potential", "PotentialOutput", "Scaled"]

MODELS: dict[str, tuple[type, type[torch.nn.Module]]] = {
    "schnet": (SchNetConfig, SchNet),
    "painn": (PaiNNConfig, PaiNN),
    "nequip": (NequIPConfig, NequIP),
    "mace": (MACEConfig, MACE),
}
"""Registered architectures: name -> (config class, module class)."""


def make_config(name: str, values: Mapping[str, Any]) -> Any:
    """Build the config dataclass of architecture ``name`` from a mapping.

    Raises:
        ConfigError: unknown architecture or key (with a did-you-mean suggestion), or a
            value out of range.

    """
    if name not in MODELS:
        hint = difflib.get_close_matches(name, MODELS, n=1)
        raise ConfigError(f"unknown model {name!r}" + (f"; did you mean {hint[0]!r}?" if hint
                          else f"; choose from {sorted(MODELS)}"))
    config_cls = MODELS[name][0]
    known = [f.name for f in dataclasses.fields(config_cls)]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"unknown {name} option {key!r}" + (
                f"; did you mean {hint[0]!r}?" if hint else f"; options are {known}"))
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from err


def build(
    name: str,
    elements: Sequence[str | int],
    cutoff: float,
    *,
    dtype: torch.dtype = torch.float64,
    e0: Mapping[str, float] | None = None,
    scale: float = 1.0,
    seed: int | None = 0,
    zbl: bool = False,
    d3: str | Mapping[str, Any] = "",
    electrostatics: bool | Mapping[str, Any] | None = None,
    **config: Any,
) -> Potential:
    """Build a potential: per-element reference energies plus a learned term.

    Args:
        name: architecture, a key of `MODELS` (e.g. ``"schnet"``).
        elements: element symbols (or atomic numbers) the potential will know.
        cutoff: neighbour cutoff in Å.
        dtype: model dtype (float64 default; float32 is faster, looser).
        e0: per-element reference energies in eV (default zeros; see
            `nnip.physics.fit_reference_energies`).
        scale: energy scale of the learned term in eV.
        seed: seed for weight initialisation (global RNG state is left untouched);
            ``None`` uses the current global RNG.
        zbl: add ZBL nuclear repulsion (`nnip.physics.repulsion.ZBL`), switched off at
            the covalent bond length, so that close atoms repel where data is absent.
        d3: add DFT-D3(BJ) dispersion (`nnip.physics.dispersion.D3Dispersion`) with this
            functional's parameters (e.g. ``"pbe"``), or a dict of its arguments.
        electrostatics: add Coulomb energy of predicted charges
            (`nnip.physics.electrostatics.Electrostatics`): ``True`` for the defaults or
            a dict with ``arch`` (default ``"shared"``: a charge readout on the main
            model's own final features, one network; or an architecture name for a
            separate charge network, the default when ``params`` is given), ``params``
            (the separate network's hyperparameters, default those of the main model),
            ``smearing`` (Å, default 1), ``method`` (auto, ewald, pme, direct),
            ``lr_wavelength``, ``mesh_spacing`` (Å), ``charge_model`` (``local`` or
            ``qeq``), ``hardness`` (eV/e²), ``qeq_energy`` and ``charge_energy``
            (a charge-dependent local energy, shared readout only).
        **config: hyperparameters of the architecture's config dataclass.

    Returns:
        A `Potential` with terms ``reference`` and ``name``.

    """
    if not cutoff > 0:
        raise ConfigError(f"cutoff must be > 0 Å, got {cutoff}")
    cfg = make_config(name, config)
    type_map = TypeMap(elements)
    reference = ReferenceEnergies(type_map)
    if e0 is not None:
        reference.set(e0)
    module_cls = MODELS[name][1]
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        learned = module_cls(type_map, cutoff, cfg)
    spec = {"arch": name, "config": dataclasses.asdict(cfg), "elements": type_map.symbols,
            "cutoff": float(cutoff), "scale": float(scale)}
    terms: dict[str, torch.nn.Module] = {"reference": reference, name: Scaled(learned, scale)}
    if zbl:
        from nnip.physics.repulsion import ZBL

        terms["zbl"] = ZBL(type_map)
        spec["zbl"] = True
    if d3:
        from nnip.physics.dispersion import D3Dispersion

        settings = {"xc": d3, "damping": "bj", "cutoff": 15.0} if isinstance(d3, str) \
            else dict(d3)
        terms["d3"] = D3Dispersion(**settings)
        spec["d3"] = settings
    if electrostatics:
        terms["electrostatics"], spec["electrostatics"] = _electrostatics(
            electrostatics, name, config, type_map, cutoff, seed)
    potential = Potential(terms, type_map, cutoff, spec)
    return potential.to(dtype)


_ELECTROSTATICS_KEYS = ("arch", "params", "smearing", "method", "lr_wavelength", "mesh_spacing",
                        "charge_model", "hardness", "qeq_energy", "charge_energy")


def _electrostatics(settings: bool | Mapping[str, Any], name: str, config: Mapping[str, Any],
                    type_map: TypeMap, cutoff: float, seed: int | None
                    ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The electrostatics term and its resolved settings (stored in the spec)."""
    from nnip.physics.electrostatics import Electrostatics, readout_channels

    settings = {} if settings is True else dict(settings)  # type: ignore[arg-type]
    for key in settings:
        if key not in _ELECTROSTATICS_KEYS:
            hint = difflib.get_close_matches(key, _ELECTROSTATICS_KEYS, n=1)
            raise ConfigError(f"unknown electrostatics option {key!r}" + (
                f"; did you mean {hint[0]!r}?" if hint else
                f"; options are {list(_ELECTROSTATICS_KEYS)}"))
    # default: one network (charges read from the main model's features); ``params``
    # alone asks for a separate charge network of the main architecture
    arch = settings.get("arch", name if "params" in settings else "shared")
    if arch == "shared":  # a charge readout on the main term's final features
        if settings.get("params"):
            raise ConfigError("electrostatics arch 'shared' reads charges from the main "
                              "model's features and takes no 'params'")
        width = int(make_config(name, config).n_features)  # type: ignore[attr-defined]
        params: dict[str, Any] = {}
        # with charge_energy more outputs: the coupling a_i (eV/e) of a_i q_i (linear)
        # or the features e_i of MLP([e_i, q_i]) (mlp)
        try:
            outputs = readout_channels(settings.get("charge_energy"))
        except ValueError as err:
            raise ConfigError(str(err)) from err
        make = lambda: MLP([width, max(width // 2, 1), outputs], "silu")  # noqa: E731
    else:
        if arch not in MODELS:
            raise ConfigError(f"unknown electrostatics arch {arch!r}; options are "
                              f"{sorted(MODELS)} or 'shared'")
        cfg = make_config(arch, dict(settings["params"]) if "params" in settings else
                          (dict(config) if arch == name else {}))
        params = dataclasses.asdict(cfg)
        make = lambda: MODELS[arch][1](type_map, cutoff, cfg)  # noqa: E731
    # the seed covers every weight of the term (the mlp charge energy's network too)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed + 1)
        charge_net = make()
        try:
            term = Electrostatics(
                charge_net, type_map, smearing=float(settings.get("smearing", 1.0)),
                method=settings.get("method", "auto"),
                lr_wavelength=settings.get("lr_wavelength"),
                mesh_spacing=settings.get("mesh_spacing"),
                feature_source=name if arch == "shared" else None,
                charge_model=settings.get("charge_model", "local"),
                hardness=float(settings.get("hardness", 5.0)),
                qeq_energy=settings.get("qeq_energy", "coulomb"),
                charge_energy=settings.get("charge_energy") or False)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    resolved = {"arch": arch, "params": params,
                "smearing": term.coulomb.smearing, "method": term.coulomb.method,
                "lr_wavelength": term.coulomb.lr_wavelength,
                "mesh_spacing": term.coulomb.mesh_spacing, "charge_model": term.charge_model}
    if term.charge_model == "qeq":
        resolved["hardness"] = term.hardness
        resolved["qeq_energy"] = term.qeq_energy
    if term.charge_energy:  # True for the linear form, as files before "mlp" had it
        resolved["charge_energy"] = True if term.charge_energy == "linear" else \
            term.charge_energy
    return term, resolved


from nnip.models.committee import Committee  # noqa: E402  (imports Potential from here)
