"""Last-layer prediction rigidity (LLPR): a single-model energy uncertainty.

The energy of a structure is linear in the last layer's weights ``w``:
``E = w · f + ...`` with ``f = sum_i phi_i`` the sum over atoms of the features entering
the readout's final linear layer (minus those of the isolated atom of that element, as
nnip's models subtract it). Treating ``w`` as a Bayesian linear model on the training
structures gives ``sigma^2(S) = alpha^2 f_S^T (F^T F + lambda I)^{-1} f_S``, with ``alpha``
calibrated on validation data (Bigi, Chong, Ceriotti, Grasselli, Mach. Learn.: Sci.
Technol. 5, 045018 (2024)). It costs one forward pass, against K for a committee.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from nnip.data.graph import AtomicGraph
from nnip.models.potential import Potential

__all__ = ["LLPR"]


def _last_linear(model: Potential) -> torch.nn.Linear:
    arch = model.spec.get("arch")
    if arch in model.terms:  # the main learned term, not e.g. a charge network
        learned = [model.terms[arch]]
    else:
        learned = [t for name, t in model.terms.items()
                   if name not in ("reference", "zbl", "d3", "electrostatics")]
    last = None
    for term in learned:
        for module in term.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:
                last = module
    if last is None:
        raise ValueError("LLPR needs a model whose readout ends in a torch.nn.Linear(·, 1)")
    return last


class LLPR:
    """Energy uncertainty of a single model from its last-layer features.

    Args:
        model: a trained potential (SchNet, PaiNN, NequIP; for MACE the last readout's
            features).
        regularizer: ``lambda`` added to the diagonal of ``F^T F`` (relative to its
            mean diagonal).
    """

    def __init__(self, model: Potential, regularizer: float = 1e-6) -> None:
        self.model, self.regularizer = model, float(regularizer)
        self.layer = _last_linear(model)
        self.inverse: np.ndarray | None = None
        self.alpha = 1.0

    def features(self, frames: Sequence[Atoms], batch_size: int = 8) -> np.ndarray:
        """``(n_frames, d)`` summed last-layer features of each structure."""
        out = []
        for start in range(0, len(frames), batch_size):
            chunk = list(frames[start:start + batch_size])
            graph = AtomicGraph.from_atoms(chunk, self.model.cutoff, device=self.model.device)
            seen: list[torch.Tensor] = []
            hook = self.layer.register_forward_hook(
                lambda _m, args, _o, seen=seen: seen.append(args[0].detach()))
            try:
                with torch.no_grad():
                    self.model(graph, compute_forces=False)
            finally:
                hook.remove()
            n, types = graph.n_atoms, self.model.type_map(graph.atomic_numbers)
            rows = [h for h in seen if h.shape[0] in (n, n + self.model.type_map.n_types)]
            iso = [h for h in seen if h.shape[0] == self.model.type_map.n_types]
            h = rows[-1]
            phi = h[:n] - (h[n + types] if h.shape[0] > n else iso[-1][types] if iso else 0.0)
            per = torch.zeros((graph.n_systems, phi.shape[1]), dtype=phi.dtype,
                              device=phi.device).index_add(0, graph.system_idx, phi)
            out.append(per.double().cpu().numpy())
        return np.concatenate(out)

    def fit(self, train: Sequence[Atoms], validation: Sequence[Atoms]) -> LLPR:
        """Fit the covariance on ``train`` and calibrate ``alpha`` on ``validation``.

        ``alpha`` makes the mean squared energy error equal the mean predicted variance.
        """
        f = self.features(train)
        gram = f.T @ f
        gram += self.regularizer * np.mean(np.diag(gram)) * np.eye(len(gram))
        self.inverse = np.linalg.inv(gram)
        self.alpha = 1.0
        sigma = self.energy_uncertainty(validation)
        pred = self.model.predict(list(validation), compute_forces=False).energy.cpu().numpy()
        ref = np.array([a.get_potential_energy() for a in validation])
        self.alpha = float(np.sqrt(np.mean((pred - ref) ** 2) / np.mean(sigma**2)))
        return self

    def energy_uncertainty(self, frames: Sequence[Atoms]) -> np.ndarray:
        """``(n_frames,)`` energy uncertainty in eV."""
        if self.inverse is None:
            raise RuntimeError("call LLPR.fit(train, validation) first")
        f = self.features(frames)
        return self.alpha * np.sqrt(np.einsum("nd,de,ne->n", f, self.inverse, f))
