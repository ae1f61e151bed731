"""Forces and stress by `torch.func`, optionally fused by `torch.compile` (training).

`Potential.forward` differentiates with ``torch.autograd.grad(create_graph=True)`` when it
trains, which `torch.compile` cannot trace. `FunctionalForces` computes the same
quantities as a pure function of positions and strain,
``torch.func.grad_and_value(E)(r, ε)``, which it can: the energy, its derivatives and,
at ``loss.backward()``, the derivatives of those with respect to the weights, become one
compiled graph whose element-wise edge operations are fused. Message-passing networks
spend most of their training time in such operations (PaiNN on mlearn Si: ~60 % of a
step in ``aten::mul`` over ``(n_edges, 3, features)`` tensors), so a compiled step is
2–3x faster; see `benchmarks/speed/README.md` for the measurement. Inference (MD, the
ASE calculator: ``compile=True``) gains alike, without the weights' graph.

Compilation happens at the first call (a minute or two on a CPU) with dynamic sizes, so
later batches of other sizes reuse it. Every architecture of nnip compiles (the e3nn-based
ones keep their irreps bookkeeping in plain ints, which is what the compiler guards on),
and so do committees (inference: all members in one graph, with their spreads);
a model that `torch.compile` cannot trace falls back, with a message, to the uncompiled
functional path, which gives the same numbers.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import torch

from nnip.data.graph import AtomicGraph
from nnip.models.committee import force_spread
from nnip.models.potential import (
    Potential,
    PotentialOutput,
    _per_system,
    _strained,
    _virial_stress,
)

__all__ = ["FunctionalForces", "compiled_forces"]

# Inductor's fused CPU kernels run on one thread; matrix products (aten) keep all of
# torch's threads. A parallel fused kernel sums edge messages onto atoms with atomic adds,
# which cost more than they gain: PaiNN 64x3 training step on mlearn Si, 2 threads,
# 123 ms with parallel kernels, 85 ms with serial ones (eager: 176 ms); inference of 2048
# Cu atoms 169 → 106 ms (benchmarks/speed/README.md). No effect on CUDA.
_CPU_OPTIONS = {"cpp.threads": 1}

# Inference of graphs with more edges than this runs uncompiled with chunked message sums
# (`nnip.nn.chunking`): compiled PaiNN 64x3 needs ~0.3 MB per atom (16k Cu atoms: 4.9 GB),
# chunked ~0.06 MB. Compiled is faster below (16k atoms, 1 thread: 0.32 vs ~0.5 ms/atom).
_EAGER_ABOVE_EDGES = {"cpu": 1_000_000, "cuda": 4_194_304}


class FunctionalForces:
    """``graph -> PotentialOutput`` (energy, forces, virial, stress) of a `Potential`.

    Args:
        potential: a `Potential`, or a `Committee`: its mean predictions and the
            members' spread (``energy_uncertainty``, ``forces_uncertainty``) as the
            committee gives them, all members in one compiled graph.
        compile: fuse with ``torch.compile(dynamic=True)``; ``False`` gives the same
            numbers through `torch.func` alone.

    The outputs keep their autograd graph to the weights (a loss on forces or stress
    back-propagates), like ``potential(graph, training=True)``, to ~1e-12 relative.
    """

    def __init__(self, potential: Potential, compile: bool = True) -> None:
        self.potential = potential
        # a committee's members each differentiate their own copy of the positions
        self.members = list(getattr(potential, "members", [potential]))
        self.compiled = compile
        self._fn = torch.compile(self._grad_and_value, dynamic=True,
                                 options=_CPU_OPTIONS) if compile else self._grad_and_value
        self._checked = not compile  # the first compiled call may fall back

    def _energy(self, positions: torch.Tensor, strain: torch.Tensor, graph: AtomicGraph
                ) -> tuple[torch.Tensor, tuple[Any, ...]]:
        """Total energy of all members; aux: energies (and charges) ``(K, n_atoms)``.

        Member k sees copy k of positions ``(K, n_atoms, 3)`` and strain
        ``(K, n_systems, 3, 3)``.
        """
        parts = [m.energies_and_charges(_strained(graph, positions[k], strain, k))
                 for k, m in enumerate(self.members)]
        energies = torch.stack([e for e, _ in parts])  # (K, n_atoms)
        # the sum per structure is taken outside the compiled graph: its scatter into a
        # (n_systems,) buffer is one torch 2.13's vectorised CPU code cannot generate
        # (n_systems = 1, more than one thread), and the derivatives need only the total
        if parts[0][1] is None:
            return energies.sum(), (energies,)
        return energies.sum(), (energies, torch.stack([q for _, q in parts]))

    def _grad_and_value(self, positions: torch.Tensor, strain: torch.Tensor,
                        graph: AtomicGraph) -> tuple[Any, ...]:
        return torch.func.grad_and_value(self._energy, argnums=(0, 1), has_aux=True)(
            positions, strain, graph)

    def _call(self, positions: torch.Tensor, strain: torch.Tensor, graph: AtomicGraph
              ) -> tuple[Any, ...]:
        # no "duck sizing": a batch of 3 structures must not make n_systems the constant 3
        # of the (n_systems, 3) cell and pbc shapes, which would recompile at every other
        # batch size
        # per-element gathers (the MACE-style contraction) have data-dependent sizes: the
        # compiler traces them as unbacked sizes instead of contracting every node with
        # every element's weights (ethanol, 3 elements, training step: 188 -> 79 ms)
        with torch.fx.experimental._config.patch(use_duck_shape=False), \
                torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            return self._fn(positions, strain, graph)

    def _first_call(self, positions: torch.Tensor, strain: torch.Tensor, graph: AtomicGraph
                    ) -> tuple[Any, ...]:
        """Compile; on failure retry without SIMD code generation, then run uncompiled."""
        try:
            return self._call(positions, strain, graph)
        except Exception as err:  # noqa: BLE001  (any tracing/compilation failure)
            first = err
        if "Inductor" in type(first).__name__:
            # torch 2.13's vectorised C++ code generation asserts on some graphs (as in
            # nnip.export.compiled); scalar code generation compiles them
            self._fn = torch.compile(self._grad_and_value, dynamic=True,
                                     options={**_CPU_OPTIONS, "cpp.simdlen": 1})
            try:
                out = self._call(positions, strain, graph)
                print("nnip: torch.compile's vectorised code generation failed; compiled "
                      "without SIMD vectorisation", file=sys.stderr)
                return out
            except Exception as err:  # noqa: BLE001
                first = err
        detail = str(first).strip().splitlines()[0][:200] if str(first).strip() else ""
        print(f"nnip: torch.compile cannot compile this model ({type(first).__name__}: "
              f"{detail}); continuing uncompiled", file=sys.stderr)
        if os.environ.get("NNIP_DEBUG"):
            traceback.print_exception(first, file=sys.stderr)
        self._fn, self.compiled = self._grad_and_value, False
        return self._fn(positions, strain, graph)

    def __call__(self, graph: AtomicGraph, compute_stress: bool = False,
                 training: bool = True) -> PotentialOutput:
        """Predictions of ``graph`` (with ``training``: differentiable in the weights).

        Without ``training`` the outputs are detached (inference: MD, ASE calculator).

        Returns:
            `PotentialOutput`: energy ``(n_systems,)`` eV, per-atom energies, forces
            ``(n_atoms, 3)`` eV/Å, charges (models that predict them) and, with
            ``compute_stress``, virial ``(n_systems, 3, 3)`` eV and stress eV/Å³.
        """
        if not training and graph.n_edges > _EAGER_ABOVE_EDGES.get(graph.positions.device.type,
                                                                    _EAGER_ABOVE_EDGES["cpu"]):
            # one compiled graph keeps every edge tensor for the backward pass (~7 kB per
            # edge): large structures go through the potential's chunked message sums
            return self.potential(graph, compute_forces=True, compute_stress=compute_stress)
        if not training:  # torch.func.grad still differentiates inside no_grad
            with torch.no_grad():
                return self(graph, compute_stress, training=True)
        model = self.potential
        model.type_map.check(graph.atomic_numbers)
        dtype, k_members = model.model_dtype, len(self.members)
        positions = graph.positions.detach().to(dtype).expand(k_members, -1, -1).clone()
        strain = torch.zeros((k_members, graph.n_systems, 3, 3), dtype=dtype,
                             device=positions.device)
        if self._checked:
            grads, aux = self._call(positions, strain, graph)
        else:
            grads, aux = self._first_call(positions, strain, graph)
            self._checked = True
        (d_positions, d_strain), (energies, *charges) = grads, aux[1]
        forces = -d_positions.to(torch.float64)  # (K, n_atoms, 3)
        energy = _per_system(graph, energies)  # (K, n_systems)
        out = PotentialOutput(energy=energy.mean(0), energies=energies.mean(0),
                              charges=charges[0].mean(0) if charges else None,
                              forces=forces.mean(0))
        if k_members > 1:  # a committee: its spread, as `Committee` gives it
            calibration = model.calibration
            out.energy_uncertainty = calibration.to(energy.dtype) * energy.std(0)
            out.forces_uncertainty = force_spread(forces, calibration)
        if compute_stress:
            out.virial, out.stress = _virial_stress(graph, d_strain.sum(0) / k_members)
        return out


def compiled_forces(potential: Potential) -> FunctionalForces:
    """A compiled `FunctionalForces` of ``potential`` (a single model or a committee)."""
    return FunctionalForces(potential, compile=True)
