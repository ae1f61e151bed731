"""Analytic pair potentials (Lennard-Jones, Morse) as energy terms.

They are references with known answers: the MD engine's tests integrate them, and users
can add one to a learned model (e.g. a soft repulsive wall). Both are smoothly switched
off at the cutoff by the polynomial envelope (Klicpera et al., p = 6), so energy, forces
and their first derivatives are continuous: energy is conserved in NVE without the
small drift of a truncated-and-shifted potential.

Per-atom energies are ``E_i = 1/2 sum_j phi(r_ij) f_cut(r_ij)`` over the full neighbour
list, so the total is the usual pair sum. One parameter set for all element pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.nn.cutoff import PolynomialCutoff
from nnip.nn.embedding import TypeMap

__all__ = ["LennardJones", "Morse", "pair_potential"]


class _PairTerm(nn.Module):
    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.envelope = PolynomialCutoff(cutoff, p=6)

    def phi(self, r: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom energies ``(n_atoms,)`` in eV."""
        vec = graph.edge_vectors()  # (n_edges, 3) Å
        r = torch.linalg.norm(vec, dim=-1)
        inside = r < self.cutoff
        r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
        pair = torch.where(inside, self.phi(r_safe) * self.envelope(r_safe),
                           torch.zeros_like(r))
        energies = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device)
        return energies.index_add(0, graph.edge_index[0], 0.5 * pair)


class LennardJones(_PairTerm):
    """phi(r) = 4 epsilon ((sigma/r)^12 - (sigma/r)^6).

    Args:
        epsilon: well depth in eV.
        sigma: zero crossing in Å.
        cutoff: switching-off radius in Å (2.5-3 sigma is usual).
    """

    def __init__(self, epsilon: float, sigma: float, cutoff: float) -> None:
        super().__init__(cutoff)
        self.epsilon, self.sigma = float(epsilon), float(sigma)

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        """Pair energy in eV of distances ``r`` in Å."""
        s6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (s6 * s6 - s6)


class Morse(_PairTerm):
    """phi(r) = D (exp(-2 a (r - r0)) - 2 exp(-a (r - r0))).

    Args:
        depth: well depth ``D`` in eV.
        alpha: width ``a`` in 1/Å.
        r0: equilibrium distance in Å.
        cutoff: switching-off radius in Å.
    """

    def __init__(self, depth: float, alpha: float, r0: float, cutoff: float) -> None:
        super().__init__(cutoff)
        self.depth, self.alpha, self.r0 = float(depth), float(alpha), float(r0)

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        """Pair energy in eV of distances ``r`` in Å."""
        x = torch.exp(-self.alpha * (r - self.r0))
        return self.depth * (x * x - 2.0 * x)


def pair_potential(kind: str, elements: Sequence[str | int], cutoff: float,
                   **params: float):
    """A `Potential` made of one analytic pair term (no learned part).

    Args:
        kind: ``lj`` (``epsilon`` eV, ``sigma`` Å) or ``morse`` (``depth`` eV, ``alpha``
            1/Å, ``r0`` Å).
        elements: the elements it accepts (all pairs share the parameters).
        cutoff: cutoff in Å.
        **params: the pair parameters.

    Example:
        >>> argon = pair_potential("lj", ["Ar"], cutoff=8.5, epsilon=0.0104, sigma=3.4)

    """
    from nnip.models.potential import Potential

    terms = {"lj": LennardJones, "morse": Morse}
    if kind not in terms:
        raise ValueError(f"pair potential kind {kind!r} not in {sorted(terms)}")
    term = terms[kind](cutoff=cutoff, **params)
    spec = {"arch": f"pair:{kind}", "params": dict(params), "cutoff": cutoff}
    return Potential({kind: term}, TypeMap(list(elements)), cutoff, spec=spec).double()
