"""Grimme's DFT-D3 dispersion as an energy term, through the maintained `torch-dftd`.

Use it to add dispersion to a model trained on DFT data computed without it (or to
subtract it before training on data that includes it): ``build(..., d3="pbe")`` or
``model.d3: pbe`` in a config. Becke–Johnson damping by default (``d3_damping``), two-
body terms, the functional's published parameters (Grimme, Antony, Ehrlich, Krieg,
J. Chem. Phys. 132, 154104 (2010); Grimme, Ehrlich, Goerigk, J. Comput. Chem. 32, 1456
(2011)). The term keeps its own neighbour list at ``cutoff`` (default 15 Å, smoothly
switched off by torch-dftd's polynomial) because dispersion reaches far beyond a
message-passing cutoff; its per-atom energies are half of each pair's energy, and forces
and stress come from the same autograd call as every other term.

torch-dftd is an optional dependency: ``pip install torch-dftd`` (or nnip's ``[d3]`` extra).
"""

from __future__ import annotations

import torch
from torch import nn

from nnip.data.graph import AtomicGraph
from nnip.data.neighbors import batch_neighbor_list

__all__ = ["D3Dispersion", "DAMPINGS", "SMOOTHINGS"]

DAMPINGS = ("bj", "zero", "bjm", "zerom")
"""D3 damping functions (Becke–Johnson, zero, and their modified forms)."""
SMOOTHINGS = ("poly", "none")
"""How pair energies reach zero at the cutoff (see `D3Dispersion`)."""


class D3Dispersion(nn.Module):
    """DFT-D3 two-body dispersion energy per atom (eV).

    Args:
        xc: exchange-correlation functional whose D3 parameters to use (``pbe``,
            ``b3lyp``, ``revpbe``, ...).
        damping: ``bj`` (Becke–Johnson, default), ``zero``, ``zerom``, ``bjm``.
        cutoff: pair cutoff in Å.
        cn_cutoff: coordination-number cutoff in Å (at most ``cutoff``).
        smoothing: ``poly`` (default): pair energies are switched off smoothly over the
            last bohr before ``cutoff`` (torch-dftd's polynomial), so forces are
            continuous; ``none``: a sharp cutoff, as LAMMPS's ``pair_style dispersion/d3``
            and Grimme's reference code have.

    Raises:
        ValueError: unknown damping or smoothing, or a non-positive cutoff.
    """

    long_range = True
    """Reaches beyond the neighbour-list cutoff (the physics checks treat it apart)."""

    def __init__(self, xc: str = "pbe", damping: str = "bj", cutoff: float = 15.0,
                 cn_cutoff: float = 15.0, smoothing: str = "poly") -> None:
        super().__init__()
        if damping not in DAMPINGS:
            raise ValueError(f"D3 damping must be one of {DAMPINGS}, got {damping!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"D3 smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if not (cutoff > 0 and cn_cutoff > 0):
            raise ValueError(f"D3 cutoffs must be positive (Å), got {cutoff}, {cn_cutoff}")
        try:
            from torch_dftd.dftd3_xc_params import get_dftd3_default_params
            from torch_dftd.nn.dftd3_module import DFTD3Module
        except ImportError as err:
            raise ImportError("the D3 dispersion term needs torch-dftd "
                              "(pip install torch-dftd)") from err
        self.xc, self.damping, self.cutoff = xc, damping, float(cutoff)
        self.cn_cutoff, self.smoothing = min(float(cn_cutoff), self.cutoff), smoothing
        params = get_dftd3_default_params(damping, xc)
        self.d3 = DFTD3Module(params, cutoff=self.cutoff, cnthr=self.cn_cutoff,
                              dtype=torch.float64, bidirectional=True,
                              cutoff_smoothing=smoothing)

    def settings(self) -> dict[str, str | float]:
        """The constructor's arguments (what a model file stores to rebuild the term)."""
        return {"xc": self.xc, "damping": self.damping, "cutoff": self.cutoff,
                "cn_cutoff": self.cn_cutoff, "smoothing": self.smoothing}

    def lammps_pair_style(self) -> str:
        """The same dispersion as a LAMMPS pair style (``pair_style dispersion/d3 ...``).

        LAMMPS's style has a sharp cutoff; with ``smoothing="poly"`` the two differ by the
        pairs in the last bohr before the cutoff (see the README's LAMMPS section). Both
        interpolate C6 from Grimme's reference table; LAMMPS, like Grimme's code, takes the
        nearest reference C6 where every Gaussian weight underflows (atoms with a
        coordination number far from all references, e.g. Ni in dense fcc), torch-dftd a
        softmax, so such atoms differ slightly.
        """
        return f"dispersion/d3 {self.damping} {self.xc} {self.cutoff:g} {self.cn_cutoff:g}"

    def forward(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom dispersion energies ``(n_atoms,)`` in eV."""
        edge_index, edge_shift = batch_neighbor_list(graph.positions, graph.cell, graph.pbc,
                                                     graph.system_idx, self.cutoff)
        pos = graph.positions.to(torch.float64)
        cell = graph.cell.to(torch.float64)
        edge_cell = cell[graph.system_idx[edge_index[0]]]  # (n_edges, 3, 3)
        shift = torch.einsum("ek,ekc->ec", edge_shift.to(pos.dtype), edge_cell)  # Å
        n = graph.n_atoms
        # torch-dftd sums pair energies per "graph" given by batch_edge; one graph per atom
        # (the centre of each directed edge) gives per-atom energies.
        per_atom_cell = cell[graph.system_idx]  # (n_atoms, 3, 3), sizes its output
        energies = self.d3.calc_energy_batch(
            graph.atomic_numbers, pos, edge_index, cell=per_atom_cell, pbc=graph.pbc,
            shift_pos=shift, batch=torch.arange(n, device=pos.device),
            batch_edge=edge_index[0], damping=self.damping)
        return energies.to(graph.positions.dtype)
