/* pair_style nnip: an nnip potential compiled by `nnip export` (AOTInductor .pt2).
 *
 *   pair_style nnip
 *   pair_coeff * * model.pt2 Cu Ni     # one element symbol (or NULL) per atom type
 *
 * Needs `newton_pair on` (the default). A full neighbour list with ghost atoms is
 * requested and the ghost cutoff is raised to the model's ghost cutoff (message-passing
 * layers x cutoff, from the package's metadata) plus the neighbour skin, so that every
 * owned atom's energy is exact; forces on ghost atoms are summed back onto their owners
 * by LAMMPS. Global energy and virial, per-atom energy; per-atom virial is not provided.
 * A committee's per-atom force spread (eV/Å) is stored in the per-atom property
 * d_nnip_uncertainty (compute property/atom d_nnip_uncertainty).
 *
 * Models with learned-charge electrostatics (package format nnip-aoti-2):
 *
 *   pair_style nnip total_charge 1.0   # the system's total charge in e (default 0)
 *
 * Per step: pass 1 (the package's forward-only entry "charges") gives the owned atoms'
 * raw charges q~ and constraint weights w; two sums over all processes give the charges
 * q_i = q~_i + w_i (Q - sum q~) / sum w; an Ewald sum of the Gaussian-smeared charges
 * (reciprocal space only, written here, formulas in nnip/export/_ewald.py) gives the
 * Coulomb energy (tallied as ecoul), its forces at fixed charges, its virial and the
 * potentials phi_i = dE_c/dq_i; psi_i = phi_i - sum_j w_j phi_j / sum w is dE_c/dq~_i,
 * and pass 2 with psi gives the short-range energy plus the forces and virial of the
 * charges' dependence on positions. 3D-periodic boxes only. The charges are the
 * per-atom property d_nnip_charge (e). At the end of a run, rank 0 logs its time per
 * step in the package and in the Ewald sum.
 *
 * Charge equilibration (package format nnip-aoti-3, charge_model qeq):
 *
 *   pair_style nnip total_charge 0.0 qeq_tolerance 1e-10
 *
 * Pass 1 gives the raw outputs q~ (electronegativities chi = -d0 q~, d0 the metadata's
 * chi_scale) and per-atom hardnesses J. The charges solve H q - mu 1 = -chi, sum q = Q
 * with H = C + diag(J + s0) (C: the Ewald operator, s0 the Gaussian self interaction)
 * by preconditioned conjugate gradients over all processes, restricted to the plane
 * sum q = Q (residuals projected onto sum = 0, which removes mu), each product C v one
 * distributed k-space pass; the solutions warm-start the next step (per-atom
 * properties that migrate with the atoms). qeq_energy coulomb: one more solve gives the
 * adjoint lambda (H lambda - nu 1 = phi, sum lambda = 0); fixed-charge forces and virial
 * are those of q - lambda minus those of lambda, psi = d0 lambda. qeq_energy full: forces at fixed q, psi = -d0 q,
 * and the energy adds chi q + (J + s0) q^2 / 2. Formulas: nnip/export/_ewald.py
 * (equilibrate). The solve stops at a residual of qeq_tolerance times the right-hand
 * side (relative, 2-norm); a solve that does not get there in 1000 iterations stops the
 * run with an error.
 *
 * Charge-dependent local energy (package format nnip-aoti-4, local or qeq charges as the
 * metadata's charge_model says): the charges entry also returns each atom's inputs of
 * f_i(e_i, q_i); once the charges are known, the package's third entry "charge_energy"
 * gives g_i = df_i/dq_i, which joins phi in psi (local charges) or the adjoint's
 * right-hand side (qeq: H lambda - nu 1 = phi + g for coulomb, = g for full, then
 * psi = d0 (lambda - q) for full); pass 2 takes the charges as one more input and adds
 * f_i of the owned atoms to their energies (tallied with the short-range energy).
 *
 * A committee with electrostatics (package format nnip-aoti-5; charges, charge model and
 * charge energy as in the formats above, from the metadata): every member predicts its
 * own charges, so the charge arrays carry a leading member axis (members x atoms) and
 * each member gets its own charge solve and Ewald sum per step. Energy, forces and virial
 * are the members' means (the Coulomb energy tallied as ecoul), d_nnip_charge holds the
 * members' mean charges, and each member's Ewald forces join its own forces before the
 * spread d_nnip_uncertainty is taken.
 */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(nnip,PairNNIP);
// clang-format on
#else

#ifndef LMP_PAIR_NNIP_H
#define LMP_PAIR_NNIP_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}
namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace LAMMPS_NS {

class PairNNIP : public Pair {
 public:
  PairNNIP(class LAMMPS *);
  ~PairNNIP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  void finish() override;

 protected:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> charges_model;    // pass 1
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> charge_energy_model;  // df/dq
  std::vector<long> type_z;    // atomic number per LAMMPS type (index 1..ntypes), 0: NULL
  std::vector<std::string> model_elements;    // the package's elements, in its order
  std::string lammps_d3;    // the D3 pair style the model needs overlaid (empty: none)
  double cutoff = 0.0;         // Å, the model's neighbour cutoff
  double ghost_cutoff = 0.0;   // Å, layers x cutoff
  int committee = 0;
  double calibration = 1.0;    // factor on the committee's spread
  int uncertainty_index = -1;  // per-atom property d_nnip_uncertainty (committees)
  std::vector<double> member_f;    // (nall, 3 x committee) members' forces, reverse-summed
  // electrostatics (learned charges, Ewald sum outside the package)
  bool electrostatics = false;
  double smearing = 0.0;          // Å, the Gaussian width sigma
  double ewald_accuracy = 1e-12;  // smallest exp(-sigma^2 k^2 / 2) summed
  double total_charge = 0.0;      // e, the system's total charge (pair_style keyword)
  bool qeq = false;               // charge equilibration (format nnip-aoti-3, or -4/5 qeq)
  bool charge_energy = false;     // a charge-dependent local energy (format nnip-aoti-4/5)
  bool stacked = false;           // a committee's charges, one row per member (nnip-aoti-5)
  int members = 1;                // rows of the charge arrays: committee members, or 1
  std::vector<double> coulomb_f;  // (members, nlocal, 3) each member's Ewald forces
  std::vector<at::Tensor> charge_energy_inputs;    // atomic numbers, extra (n, C), charges
  bool qeq_full = false;          // qeq_energy full: the whole E_Qeq is the energy
  double chi_scale = 0.0;         // eV/e, chi = -chi_scale q~
  double qeq_tolerance = 1e-10;   // relative residual of the conjugate-gradient solves
  std::vector<int> qeq_index;     // per-atom warm starts of the solves: q, lambda per member
  bool qeq_warm = false;          // the warm starts hold solutions (false before a run)
  long qeq_iterations = 0;        // conjugate-gradient iterations since the last run
  int charge_index = -1;          // per-atom property d_nnip_charge
  double time_model = 0.0, time_ewald = 0.0;    // s on this process since the last run
  long steps = 0;
  size_t n_kvectors = 0;
  void allocate();
  std::vector<at::Tensor> run_model(torch::inductor::AOTIModelPackageLoader &loader,
                                    const std::vector<at::Tensor> &inputs);
  void tally(const std::vector<at::Tensor> &out, int nall);
  void charges_and_psi(std::vector<at::Tensor> &inputs);
  std::vector<double> charge_gradient(const std::vector<double> &q, int member);
  void equilibrate(const double *raw, const double *hardness, std::vector<double> &q,
                   double *psi, int member);
  void local_charges(const double *raw, const double *weight, std::vector<double> &q,
                     double *psi, int member);
  double *member_forces(int member);
  void solve(const std::vector<double> &diagonal, const std::vector<double> &rhs,
             double *x, double total, const char *what);
  // the Ewald sum: k-vectors and per-direction phase tables of the owned atoms (once
  // per step), then k-space passes for any charge vector
  struct KVector {
    double k[3], g;
    int n[3];
  };
  std::vector<KVector> kv;
  std::vector<double> cos_t[3], sin_t[3];
  double ewald_volume = 0.0, ewald_diagonal = 0.0;    // Å^3; C_ii (eV/e^2)
  void ewald_setup();
  void kspace(const std::vector<double> &v, std::vector<double> *phi, double force_sign,
              double virial_sign, double *forces_out = nullptr);
};

}    // namespace LAMMPS_NS

#endif
#endif
