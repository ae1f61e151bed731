/* pair_style nnip: see pair_nnip.h. Written for nnip (MIT licence). */

#include "pair_nnip.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <utility>

using namespace LAMMPS_NS;

namespace {

const char *const SYMBOLS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};

long atomic_number(const std::string &symbol)
{
  for (long z = 1; z < (long) (sizeof(SYMBOLS) / sizeof(SYMBOLS[0])); ++z)
    if (symbol == SYMBOLS[z]) return z;
  return 0;
}

std::vector<std::string> split(const std::string &text, char sep)
{
  std::vector<std::string> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, sep)) out.push_back(item);
  return out;
}

}    // namespace

PairNNIP::PairNNIP(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the package returns the virial of this domain's energy
}

PairNNIP::~PairNNIP()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairNNIP::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

void PairNNIP::settings(int narg, char **arg)
{
  total_charge = 0.0;
  qeq_tolerance = 1e-10;
  for (int k = 0; k < narg; k += 2) {
    if (k + 1 >= narg)
      error->all(FLERR, "pair_style nnip: keyword '{}' needs a value", arg[k]);
    if (strcmp(arg[k], "total_charge") == 0)
      total_charge = utils::numeric(FLERR, arg[k + 1], false, lmp);
    else if (strcmp(arg[k], "qeq_tolerance") == 0)
      qeq_tolerance = utils::numeric(FLERR, arg[k + 1], false, lmp);
    else
      error->all(FLERR, "pair_style nnip takes 'total_charge Q' (e) and 'qeq_tolerance T', "
                 "got '{}'", arg[k]);
  }
  if (!(qeq_tolerance > 0.0 && qeq_tolerance < 1.0))
    error->all(FLERR, "pair_style nnip: qeq_tolerance must be in (0, 1), got {}",
               qeq_tolerance);
}

void PairNNIP::coeff(int narg, char **arg)
{
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff * * model.pt2 followed by {} element symbols (one per "
               "atom type, NULL for none), got {} arguments", ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style nnip must start with * *");
  if (!allocated) allocate();
  try {
    model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(arg[2]);
  } catch (const std::exception &err) {
    error->all(FLERR, "pair_style nnip cannot load {}: {}", arg[2], err.what());
  }
  auto metadata = model->get_metadata();
  const std::string format = metadata["format"];
  if (format != "nnip-aoti-1" && format != "nnip-aoti-2" && format != "nnip-aoti-3" &&
      format != "nnip-aoti-4" && format != "nnip-aoti-5")
    error->all(FLERR, "{} is not an nnip compiled model this plugin reads (format '{}'; "
               "write it with `nnip export`, rebuild the plugin with `nnip lammps build`)",
               arg[2], format);
  electrostatics = format != "nnip-aoti-1";
  stacked = format == "nnip-aoti-5";
  members = stacked ? std::stoi(metadata["committee"]) : 1;
  charge_energy = format == "nnip-aoti-4" || (stacked && !metadata["charge_energy"].empty());
  qeq = format == "nnip-aoti-3" ||
      ((charge_energy || stacked) && metadata["charge_model"] == "qeq");
  qeq_index.clear();
  if (qeq) {
    qeq_full = metadata["qeq_energy"] == "full";
    chi_scale = std::stod(metadata["chi_scale"]);
    for (int m = 0; m < members; m++)    // q and lambda of each member: nnip_qeq_q, ..._q1
      for (const char *base : {"nnip_qeq_q", "nnip_qeq_lambda"}) {
        const std::string name = m == 0 ? base : fmt::format("{}{}", base, m);
        int flag, cols;
        int index = atom->find_custom(name.c_str(), flag, cols);
        if (index < 0) index = atom->add_custom(name.c_str(), 1, 0);
        qeq_index.push_back(index);
      }
  }
  if (electrostatics) {
    if (metadata["electrostatics"] != "ewald")
      error->all(FLERR, "{}: electrostatics '{}' is not one this plugin sums (ewald)", arg[2],
                 metadata["electrostatics"]);
    try {
      charges_model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(arg[2], "charges");
    } catch (const std::exception &err) {
      error->all(FLERR, "pair_style nnip cannot load the charges entry of {}: {}", arg[2],
                 err.what());
    }
    if (charge_energy) {
      try {
        charge_energy_model =
            std::make_unique<torch::inductor::AOTIModelPackageLoader>(arg[2], "charge_energy");
      } catch (const std::exception &err) {
        error->all(FLERR, "pair_style nnip cannot load the charge_energy entry of {}: {}",
                   arg[2], err.what());
      }
    }
    smearing = std::stod(metadata["smearing"]);
    ewald_accuracy = std::stod(metadata["ewald_accuracy"]);
    int flag, cols;
    charge_index = atom->find_custom("nnip_charge", flag, cols);
    if (charge_index < 0) charge_index = atom->add_custom("nnip_charge", 1, 0);
  }
  model_elements = split(metadata["elements"], ',');
  cutoff = std::stod(metadata["cutoff"]);
  ghost_cutoff = std::stod(metadata["ghost_cutoff"]);
  committee = std::stoi(metadata["committee"]);
  calibration = std::stod(metadata["calibration"]);
  lammps_d3 = metadata.count("lammps_d3") ? metadata["lammps_d3"] : "";
  comm_reverse = 3 * committee;    // members' forces on ghosts go back to their owners
  type_z.assign(ntypes + 1, 0);
  for (int t = 1; t <= ntypes; t++) {
    std::string symbol = arg[2 + t];
    if (symbol == "NULL") continue;
    if (std::find(model_elements.begin(), model_elements.end(), symbol) == model_elements.end())
      error->all(FLERR, "element {} (atom type {}) is not in {} (elements: {})", symbol, t,
                 arg[2], metadata["elements"]);
    type_z[t] = atomic_number(symbol);
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = (type_z[i] > 0 && type_z[j] > 0) ? 1 : 0;
  if (committee > 0) {
    int flag, cols;
    uncertainty_index = atom->find_custom("nnip_uncertainty", flag, cols);
    if (uncertainty_index < 0) uncertainty_index = atom->add_custom("nnip_uncertainty", 1, 0);
  }
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style nnip: {} (elements {}, cutoff {} Å, ghost cutoff {} Å{}{}{})\n",
                   arg[2], metadata["elements"], cutoff, ghost_cutoff,
                   committee > 0 ? fmt::format(", committee of {}", committee) : "",
                   electrostatics ? fmt::format(", electrostatics: Gaussian charges of width "
                                                "{} Å, {}Ewald sum, total charge {} e",
                                                smearing, qeq ? fmt::format(
                                                "charge equilibration (energy {}, tolerance "
                                                "{}), ", qeq_full ? "full" : "coulomb",
                                                qeq_tolerance) : "", total_charge) : "",
                   charge_energy ? fmt::format(", charge-dependent local energy ({})",
                                               metadata["charge_energy"]) : "");
}

void PairNNIP::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style nnip requires newton pair on");
  if (!model) error->all(FLERR, "pair_style nnip: no pair_coeff given");
  if (electrostatics && (domain->dimension != 3 || !domain->xperiodic ||
                         !domain->yperiodic || !domain->zperiodic))
    error->all(FLERR, "pair_style nnip: this model's electrostatics needs a 3D-periodic box "
               "(boundary p p p)");
  if (!electrostatics && total_charge != 0.0)
    error->all(FLERR, "pair_style nnip: total_charge is set but the model has no "
               "electrostatics");
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  qeq_warm = false;
  // a model trained with D3 dispersion carries it as LAMMPS's own pair style
  if (!lammps_d3.empty() && !force->pair_match("dispersion/d3", 0) && comm->me == 0)
    error->warning(FLERR, "pair_style nnip: this model includes D3 dispersion, which is not "
                   "in the package; add it with: pair_style hybrid/overlay nnip {}", lammps_d3);
  // every ghost atom within (layers - 1) x cutoff needs its own complete neighbourhood
  double needed = ghost_cutoff + neighbor->skin;
  if (comm->cutghostuser < needed) {
    comm->cutghostuser = needed;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style nnip: ghost cutoff set to {} Å (message passing)\n",
                     needed);
  }
}

double PairNNIP::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style nnip: atom types {} {} have no element", i, j);
  return cutoff;
}

void PairNNIP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom) error->all(FLERR, "pair_style nnip does not compute per-atom virials");

  double **x = atom->x;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int n = nall + 2;    // + 2 far-away, unowned dummy atoms: never an empty input
  const double cutsq_model = cutoff * cutoff;

  // Only atoms within (layers - 1) x cutoff of an owned atom need their own edges: the
  // outer ghosts are neighbours only. The box around the owned atoms bounds that reach.
  const double reach = ghost_cutoff - cutoff;
  double lo[3] = {1e300, 1e300, 1e300}, hi[3] = {-1e300, -1e300, -1e300};
  for (int i = 0; i < nlocal; i++)
    for (int k = 0; k < 3; k++) {
      lo[k] = std::min(lo[k], x[i][k] - reach);
      hi[k] = std::max(hi[k], x[i][k] + reach);
    }
  std::vector<int64_t> centre, neighbour;
  const int nlisted = list->inum + list->gnum;
  for (int ii = 0; ii < nlisted; ii++) {
    const int i = list->ilist[ii];
    if (i >= nlocal && (x[i][0] < lo[0] || x[i][0] > hi[0] || x[i][1] < lo[1] ||
                        x[i][1] > hi[1] || x[i][2] < lo[2] || x[i][2] > hi[2]))
      continue;
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutsq_model) {
        centre.push_back(i);
        neighbour.push_back(j);
      }
    }
  }
  const int64_t n_edges = (int64_t) centre.size() + 2;

  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor positions = torch::empty({n, 3}, f64);
  torch::Tensor numbers = torch::empty({n}, i64);
  auto pos = positions.accessor<double, 2>();
  auto z = numbers.accessor<int64_t, 1>();
  double far = 0.0;
  for (int i = 0; i < nall; i++) {
    for (int k = 0; k < 3; k++) {
      pos[i][k] = x[i][k];
      far = std::max(far, std::fabs(x[i][k]));
    }
    z[i] = type_z[type[i]];
    if (z[i] == 0) error->one(FLERR, "pair_style nnip: atom of type {} has no element", type[i]);
  }
  far += 10.0 * (ghost_cutoff + cutoff) + 100.0;
  for (int d = 0; d < 2; d++) {
    pos[nall + d][0] = far + 0.5 * d * cutoff;
    pos[nall + d][1] = far;
    pos[nall + d][2] = far;
    z[nall + d] = atomic_number(model_elements[0]);
  }
  torch::Tensor edge_index = torch::empty({2, n_edges}, i64);
  auto e = edge_index.accessor<int64_t, 2>();
  for (int64_t k = 0; k < n_edges - 2; k++) {
    e[0][k] = centre[k];
    e[1][k] = neighbour[k];
  }
  e[0][n_edges - 2] = nall, e[1][n_edges - 2] = nall + 1;
  e[0][n_edges - 1] = nall + 1, e[1][n_edges - 1] = nall;
  torch::Tensor shifts = torch::zeros({n_edges, 3}, i64);
  torch::Tensor cell = torch::eye(3, f64);
  torch::Tensor n_local = torch::scalar_tensor((int64_t) nlocal, i64);
  std::vector<at::Tensor> inputs = {positions, numbers, edge_index, shifts, cell, n_local};
  if (electrostatics) charges_and_psi(inputs);    // adds psi; tallies the Coulomb terms
  tally(run_model(*model, inputs), nall);
}

std::vector<at::Tensor> PairNNIP::run_model(torch::inductor::AOTIModelPackageLoader &loader,
                                            const std::vector<at::Tensor> &inputs)
{
  std::vector<at::Tensor> out;
  const double start = MPI_Wtime();
  try {
    out = loader.run(inputs);
  } catch (const std::exception &err) {
    error->one(FLERR, "pair_style nnip: the model failed: {}", err.what());
  }
  time_model += MPI_Wtime() - start;
  return out;
}

void PairNNIP::finish()
{
  if (electrostatics && steps > 0 && comm->me == 0)
    utils::logmesg(lmp, "pair_style nnip: per step on rank 0: {:.3g} ms in the package (charges "
                   "+ main entry), {:.3g} ms in the Ewald sum ({} k-vectors)\n",
                   1e3 * time_model / steps, 1e3 * time_ewald / steps, n_kvectors);
  if (qeq && steps > 0 && comm->me == 0)
    utils::logmesg(lmp, "pair_style nnip: charge equilibration: {:.1f} conjugate-gradient "
                   "iterations per step (all solves)\n", (double) qeq_iterations / steps);
  time_model = time_ewald = 0.0;
  steps = 0;
  qeq_iterations = 0;
}

/* Forces (owned and ghost atoms), energy, per-atom energy, virial and a committee's
   spread from the package's outputs. */
void PairNNIP::tally(const std::vector<at::Tensor> &out, int nall)
{
  double **f = atom->f;
  const int nlocal = atom->nlocal;
  auto energies = out[1].accessor<double, 1>();
  auto forces = out[2].accessor<double, 2>();
  auto w = out[3].accessor<double, 2>();
  for (int i = 0; i < nall; i++)
    for (int k = 0; k < 3; k++) f[i][k] += forces[i][k];
  if (eflag_global) eng_vdwl += out[0].item<double>();
  if (eflag_atom)
    for (int i = 0; i < nlocal; i++) eatom[i] += energies[i];
  if (vflag_global) {
    virial[0] += w[0][0];
    virial[1] += w[1][1];
    virial[2] += w[2][2];
    virial[3] += w[0][1];
    virial[4] += w[0][2];
    virial[5] += w[1][2];
  }
  if (uncertainty_index >= 0) {    // spread of the members' total forces on owned atoms
    const int k = committee, width = 3 * committee;
    auto members = out[4].accessor<double, 3>();    // (k, n, 3)
    member_f.assign((size_t) nall * width, 0.0);
    for (int i = 0; i < nall; i++)
      for (int m = 0; m < k; m++)
        for (int c = 0; c < 3; c++) member_f[(size_t) i * width + 3 * m + c] = members[m][i][c];
    comm->reverse_comm(this);
    if (stacked)    // each member's Ewald forces (owned atoms) join its own forces
      for (int m = 0; m < k; m++)
        for (int i = 0; i < nlocal; i++)
          for (int c = 0; c < 3; c++)
            member_f[(size_t) i * width + 3 * m + c] +=
                coulomb_f[((size_t) m * nlocal + i) * 3 + c];
    double *u = atom->dvector[uncertainty_index];
    for (int i = 0; i < nlocal; i++) {
      const double *fi = &member_f[(size_t) i * width];
      double sum = 0.0;
      for (int c = 0; c < 3; c++) {
        double mean = 0.0;
        for (int m = 0; m < k; m++) mean += fi[3 * m + c];
        mean /= k;
        for (int m = 0; m < k; m++) sum += (fi[3 * m + c] - mean) * (fi[3 * m + c] - mean);
      }
      u[i] = calibration * std::sqrt(sum / (k - 1.0));    // unbiased, as force_spread
    }
  }
}

/* Pass 1 (the "charges" entry: raw charges q~ and weights w of the owned atoms, no
   derivatives), then per member (one row of the charge arrays; a single model has one)
   the charge solve and the Ewald sum, and psi = dE/dq~ appended to the inputs for pass 2
   (with the charges when the model has a charge energy). A committee's Coulomb energy,
   forces and virial are its members' means; each member's Ewald forces are kept in
   coulomb_f for the spread. */
void PairNNIP::charges_and_psi(std::vector<at::Tensor> &inputs)
{
  const int nlocal = atom->nlocal;
  const int64_t n = inputs[0].size(0);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto first = run_model(*charges_model, inputs);    // forward only
  // contiguous: raw charges read from a wider readout may come as a strided view
  const torch::Tensor raw = first[0].contiguous(), weight = first[1].contiguous();
  const std::vector<int64_t> shape =
      stacked ? std::vector<int64_t>{members, n} : std::vector<int64_t>{n};
  if (charge_energy) charge_energy_inputs = {inputs[1], first[2], torch::zeros(shape, f64)};
  torch::Tensor psi = torch::zeros(shape, f64);    // zero on ghosts: only owned q~ count
  if (stacked) coulomb_f.assign((size_t) members * nlocal * 3, 0.0);
  std::vector<double> mean_q(nlocal, 0.0), q;
  const double start = MPI_Wtime(), model_before = time_model;
  ewald_setup();    // this step's k-vectors and phases, shared by every member's sums
  for (int m = 0; m < members; m++) {
    const double *raw_m = raw.data_ptr<double>() + m * n;
    const double *weight_m = weight.data_ptr<double>() + m * n;
    double *psi_m = psi.data_ptr<double>() + m * n;
    if (qeq)    // the second output holds the hardnesses
      equilibrate(raw_m, weight_m, q, psi_m, m);
    else
      local_charges(raw_m, weight_m, q, psi_m, m);
    for (int i = 0; i < nlocal; i++) mean_q[i] += q[i] / members;
  }
  time_ewald += MPI_Wtime() - start - (time_model - model_before);
  steps++;
  std::copy(mean_q.begin(), mean_q.end(), atom->dvector[charge_index]);
  if (stacked) {    // the committee's force: the members' mean
    double **f = atom->f;
    for (int m = 0; m < members; m++)
      for (int i = 0; i < nlocal; i++)
        for (int c = 0; c < 3; c++)
          f[i][c] += coulomb_f[((size_t) m * nlocal + i) * 3 + c] / members;
  }
  inputs.push_back(psi);
  if (charge_energy) inputs.push_back(charge_energy_inputs[2]);    // the charges
}

/* Where member m's Ewald forces go: coulomb_f for a committee (averaged and kept for the
   spread by the caller), the atoms' forces (nullptr) for a single model. */
double *PairNNIP::member_forces(int member)
{
  return stacked ? &coulomb_f[(size_t) member * atom->nlocal * 3] : nullptr;
}

/* One member's local charges: the total-charge constraint over all processes, the Ewald
   sum, and psi: with q_i = q~_i + w_i (Q - S) / W (S = sum q~, W = sum w),
   dq_i/dq~_j = delta_ij - w_i / W, so dE/dq~_j = phi_j - sum_i w_i phi_i / W (phi + df/dq
   with a charge energy). Energies and virial are tallied with weight 1 / members. */
void PairNNIP::local_charges(const double *raw, const double *weight, std::vector<double> &q,
                             double *psi, int member)
{
  const int nlocal = atom->nlocal;
  const double scale = 1.0 / members;
  double local[2] = {0.0, 0.0}, sums[2];
  for (int i = 0; i < nlocal; i++) {
    local[0] += raw[i];
    local[1] += weight[i];
  }
  MPI_Allreduce(local, sums, 2, MPI_DOUBLE, MPI_SUM, world);
  const double excess = (total_charge - sums[0]) / sums[1];
  q.resize(nlocal);
  std::vector<double> phi;
  for (int i = 0; i < nlocal; i++) q[i] = raw[i] + weight[i] * excess;
  kspace(q, &phi, 1.0, scale, member_forces(member));
  for (int i = 0; i < nlocal; i++) {
    const double e_i = 0.5 * q[i] * phi[i] * scale;
    if (eflag_global) eng_coul += e_i;
    if (eflag_atom) eatom[i] += e_i;
  }
  if (charge_energy) {    // dE/dq = phi + df/dq
    const std::vector<double> g = charge_gradient(q, member);
    for (int i = 0; i < nlocal; i++) phi[i] += g[i];
  }
  double wphi_local = 0.0, wphi;
  for (int i = 0; i < nlocal; i++) wphi_local += weight[i] * phi[i];
  MPI_Allreduce(&wphi_local, &wphi, 1, MPI_DOUBLE, MPI_SUM, world);
  for (int i = 0; i < nlocal; i++) psi[i] = phi[i] - wphi / sums[1];
}

/* g_i = df_i/dq_i (eV/e) of one member's owned atoms' charge-dependent local energies at
   charges q (the package's charge_energy entry); the charges stay in row `member` of
   charge_energy_inputs[2] (zero on ghosts) as pass 2's last input. */
std::vector<double> PairNNIP::charge_gradient(const std::vector<double> &q, int member)
{
  const int nlocal = atom->nlocal;
  const int64_t n = charge_energy_inputs[2].size(-1);
  double *charges = charge_energy_inputs[2].data_ptr<double>() + member * n;
  for (int i = 0; i < nlocal; i++) charges[i] = q[i];
  auto out = run_model(*charge_energy_model, charge_energy_inputs);
  const torch::Tensor g = out[1].contiguous();
  const double *row = g.data_ptr<double>() + member * n;
  return std::vector<double>(row, row + nlocal);
}

/* Charge equilibration of one member's owned atoms (formulas: nnip/export/_ewald.py,
   equilibrate): charges q (e) and psi = dE/dq~ (eV/e, nlocal values); tallies the
   electrostatic energy and virial (weight 1 / members) and the forces at fixed q~ (into
   member_forces). */
void PairNNIP::equilibrate(const double *raw, const double *hardness, std::vector<double> &q,
                           double *psi, int member)
{
  const double k_e = 14.399645478425668;
  const int nlocal = atom->nlocal;
  const double scale = 1.0 / members;    // a committee's values are its members' means
  double *forces = member_forces(member);
  const double self = k_e * std::sqrt(2.0 / M_PI) / smearing;    // s0
  std::vector<double> diagonal(nlocal), minus_chi(nlocal);
  for (int i = 0; i < nlocal; i++) {
    diagonal[i] = hardness[i] + self;
    minus_chi[i] = chi_scale * raw[i];
  }
  if (!qeq_warm) {    // first step of a run: the per-atom storage holds no solution yet
    for (int index : qeq_index) std::fill_n(atom->dvector[index], nlocal, 0.0);
    qeq_warm = true;
  }
  // H q - mu 1 = -chi with sum q = Q
  double *stored_q = atom->dvector[qeq_index[2 * member]];
  solve(diagonal, minus_chi, stored_q, total_charge, "the charges");
  q.assign(stored_q, stored_q + nlocal);
  std::vector<double> phi, g;
  if (charge_energy) g = charge_gradient(q, member);    // df/dq of the charge energy
  if (qeq_full && !charge_energy) {    // E_Qeq is stationary in q: forces at fixed q
    kspace(q, &phi, 1.0, scale, forces);
    for (int i = 0; i < nlocal; i++) psi[i] = -chi_scale * q[i];
  } else {    // the adjoint: H lambda - nu 1 = dE/dq (phi + g; full: g) with sum lambda = 0
    kspace(q, &phi, 0.0, 0.0);
    std::vector<double> rhs(nlocal);
    for (int i = 0; i < nlocal; i++)
      rhs[i] = (qeq_full ? 0.0 : phi[i]) + (charge_energy ? g[i] : 0.0);
    double *stored_lambda = atom->dvector[qeq_index[2 * member + 1]];
    solve(diagonal, rhs, stored_lambda, 0.0, "the adjoint");
    std::vector<double> lambda(stored_lambda, stored_lambda + nlocal), rest(nlocal);
    for (int i = 0; i < nlocal; i++) {
      rest[i] = q[i] - lambda[i];
      psi[i] = chi_scale * (lambda[i] - (qeq_full ? q[i] : 0.0));
    }
    kspace(rest, nullptr, 1.0, scale, forces);
    kspace(lambda, nullptr, -1.0, -scale, forces);
  }
  for (int i = 0; i < nlocal; i++) {
    double e_i = 0.5 * q[i] * phi[i];
    if (qeq_full) e_i += q[i] * (-minus_chi[i] + 0.5 * diagonal[i] * q[i]);
    e_i *= scale;
    if (eflag_global) eng_coul += e_i;
    if (eflag_atom) eatom[i] += e_i;
  }
}

/* Solves H x - mu 1 = rhs with sum x = total (H = C + diag(diagonal)) over all processes'
   owned atoms: conjugate gradients restricted to the plane sum x = total (every residual
   and search direction is projected onto sum = 0, which takes the multiplier mu out),
   with a Jacobi preconditioner, starting from x (the last step's solution, shifted onto
   the plane). Stops at |P r| <= qeq_tolerance |rhs| (2-norms, P the projection). */
void PairNNIP::solve(const std::vector<double> &diagonal, const std::vector<double> &rhs,
                     double *x, double total, const char *what)
{
  const int nlocal = atom->nlocal;
  const double n_atoms = (double) atom->natoms;
  std::vector<double> r(nlocal), z(nlocal), p(nlocal), hp;
  std::vector<double> xv(x, x + nlocal);
  for (double &value : xv)    // an atom new to the run (e.g. inserted) has no warm start
    if (!std::isfinite(value)) value = 0.0;
  // sums over all processes of products a_m . b_m (one allreduce for up to 3 pairs)
  using Operands = std::pair<const std::vector<double> *, const std::vector<double> *>;
  auto dots = [&](std::initializer_list<Operands> pairs, double *out) {
    double local[3] = {0.0, 0.0, 0.0};
    int m = 0;
    for (const Operands &ab : pairs) {
      for (int i = 0; i < nlocal; i++) local[m] += (*ab.first)[i] * (*ab.second)[i];
      m++;
    }
    MPI_Allreduce(local, out, m, MPI_DOUBLE, MPI_SUM, world);
  };
  auto shift = [&](std::vector<double> &v, double target) {    // onto sum v = target
    double local = 0.0, sum;
    for (int i = 0; i < nlocal; i++) local += v[i];
    MPI_Allreduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, world);
    for (int i = 0; i < nlocal; i++) v[i] += (target - sum) / n_atoms;
  };
  auto apply = [&](const std::vector<double> &v, std::vector<double> &out) {
    kspace(v, &out, 0.0, 0.0);
    for (int i = 0; i < nlocal; i++) out[i] += diagonal[i] * v[i];
  };
  auto precondition = [&]() {
    for (int i = 0; i < nlocal; i++) z[i] = r[i] / (diagonal[i] + ewald_diagonal);
    shift(z, 0.0);
  };
  shift(xv, total);
  apply(xv, hp);
  for (int i = 0; i < nlocal; i++) r[i] = rhs[i] - hp[i];
  shift(r, 0.0);
  precondition();
  p = z;
  double norms[3];    // |rhs|^2, r . z, r . r
  dots({{&rhs, &rhs}, {&r, &z}, {&r, &r}}, norms);
  if (norms[0] == 0.0) {    // e.g. an untrained charge energy: no scale to be relative to
    if (total == 0.0) {    // the solution is 0
      std::fill_n(x, nlocal, 0.0);
      return;
    }
    std::vector<double> uniform(nlocal, total / n_atoms), hu;    // the scale of H x
    apply(uniform, hu);
    dots({{&hu, &hu}}, norms);
  }
  const double target = qeq_tolerance * std::sqrt(norms[0]);
  double rz = norms[1], rr = norms[2];
  for (int iteration = 0; iteration <= 1000; iteration++) {
    if (std::sqrt(rr) <= target || rr == 0.0) {
      std::copy(xv.begin(), xv.end(), x);
      return;
    }
    if (iteration == 1000) break;
    apply(p, hp);
    double php;
    dots({{&p, &hp}}, &php);
    const double alpha = rz / php;
    for (int i = 0; i < nlocal; i++) {
      xv[i] += alpha * p[i];
      r[i] -= alpha * hp[i];
    }
    shift(r, 0.0);    // keeps round-off from leaving the plane
    precondition();
    double next[2];    // r . z, r . r
    dots({{&r, &z}, {&r, &r}}, next);
    const double beta = next[0] / rz;
    rz = next[0], rr = next[1];
    for (int i = 0; i < nlocal; i++) p[i] = z[i] + beta * p[i];
    qeq_iterations++;
  }
  error->all(FLERR, "pair_style nnip: charge equilibration ({}) did not reach the relative "
             "residual {} in 1000 conjugate-gradient iterations", what, qeq_tolerance);
}

/* The k-vectors of the current box (one of each pair +-k, k != 0, |k| <= k_max: the same
   set as _ewald.kvectors) and the owned atoms' cos and sin of n b_d . r_i per direction d,
   stored [n][i] (plain doubles, no std::complex: its product checks for infinities and
   does not vectorise). */
void PairNNIP::ewald_setup()
{
  const double k_e = 14.399645478425668;    // e^2 / (4 pi eps0), eV Å
  const double two_pi = 2.0 * M_PI;
  const int nlocal = atom->nlocal;
  double **x = atom->x;
  // lattice vectors (rows; LAMMPS: a along x, b in the xy plane) and reciprocal vectors
  const double *h = domain->h;    // xprd yprd zprd yz xz xy
  const double a[3][3] = {{h[0], 0.0, 0.0}, {h[5], h[1], 0.0}, {h[4], h[3], h[2]}};
  const double volume = ewald_volume = h[0] * h[1] * h[2];
  double b[3][3];
  for (int d = 0; d < 3; d++) {    // b_d = 2 pi (a_{d+1} x a_{d+2}) / V
    const double *u = a[(d + 1) % 3], *v = a[(d + 2) % 3];
    b[d][0] = two_pi * (u[1] * v[2] - u[2] * v[1]) / volume;
    b[d][1] = two_pi * (u[2] * v[0] - u[0] * v[2]) / volume;
    b[d][2] = two_pi * (u[0] * v[1] - u[1] * v[0]) / volume;
  }
  const double sigma2 = smearing * smearing;
  const double k_max = std::sqrt(2.0 * std::log(1.0 / ewald_accuracy)) / smearing;
  int n_max[3];
  for (int d = 0; d < 3; d++)
    n_max[d] = (int) std::floor(k_max * std::sqrt(a[d][0] * a[d][0] + a[d][1] * a[d][1] +
                                                  a[d][2] * a[d][2]) / two_pi);
  kv.clear();
  double g_sum = 0.0;
  for (int n1 = 0; n1 <= n_max[0]; n1++)
    for (int n2 = -n_max[1]; n2 <= n_max[1]; n2++)
      for (int n3 = -n_max[2]; n3 <= n_max[2]; n3++) {
        if (!(n1 > 0 || (n1 == 0 && n2 > 0) || (n1 == 0 && n2 == 0 && n3 > 0))) continue;
        KVector v;
        for (int c = 0; c < 3; c++) v.k[c] = n1 * b[0][c] + n2 * b[1][c] + n3 * b[2][c];
        const double k2 = v.k[0] * v.k[0] + v.k[1] * v.k[1] + v.k[2] * v.k[2];
        if (k2 > k_max * k_max) continue;
        v.g = k_e * 4.0 * M_PI * std::exp(-0.5 * sigma2 * k2) / (volume * k2);
        v.n[0] = n1, v.n[1] = n2 + n_max[1], v.n[2] = n3 + n_max[2];
        kv.push_back(v);
        g_sum += v.g;
      }
  n_kvectors = kv.size();
  // C_ii = sum_k 2 G - 2 self - 2 background: the same for every atom (preconditioner)
  ewald_diagonal = 2.0 * g_sum - 2.0 * k_e / (std::sqrt(2.0 * M_PI) * smearing) -
      2.0 * k_e * M_PI * sigma2 / volume;
  const int len[3] = {n_max[0] + 1, 2 * n_max[1] + 1, 2 * n_max[2] + 1};
  const int offset[3] = {0, n_max[1], n_max[2]};
  for (int d = 0; d < 3; d++) {
    cos_t[d].resize((size_t) len[d] * nlocal);
    sin_t[d].resize((size_t) len[d] * nlocal);
    for (int m = 0; m < len[d]; m++)
      for (int i = 0; i < nlocal; i++) {
        const double angle =
            (m - offset[d]) * (b[d][0] * x[i][0] + b[d][1] * x[i][1] + b[d][2] * x[i][2]);
        cos_t[d][(size_t) m * nlocal + i] = std::cos(angle);
        sin_t[d][(size_t) m * nlocal + i] = std::sin(angle);
      }
  }
}

/* One reciprocal-space pass of the Ewald sum of Gaussian charges v (owned atoms) of width
   sigma, with the self term and, for a charged box, a neutralising background
   (nnip/export/_ewald.py derives every formula; ewald_setup first). Optionally returns
   phi = C v (eV/e), adds force_sign x the forces at fixed charges on the owned atoms and
   (rank 0: it is global) virial_sign x the virial. Each process sums its owned atoms'
   structure factors, one allreduce of 2 N_k + 1 numbers makes them global: O(N N_k / P). */
void PairNNIP::kspace(const std::vector<double> &v, std::vector<double> *phi,
                      double force_sign, double virial_sign, double *forces_out)
{
  const double k_e = 14.399645478425668;
  const int nlocal = atom->nlocal;
  double **f = atom->f;
  const size_t nk = kv.size();
  const double sigma2 = smearing * smearing;
  // exp(i (n1 b1 + n2 b2) . r_i) of the current (n1, n2): the k-vectors come sorted by
  // n1, then n2, so each row is made once per pass; exp(i k . r_i) is then one product
  std::vector<double> row_c(nlocal), row_s(nlocal);
  int row[2] = {-1, -1};
  auto select = [&](const KVector &kvec, const double *&c3, const double *&s3) {
    if (kvec.n[0] != row[0] || kvec.n[1] != row[1]) {
      row[0] = kvec.n[0], row[1] = kvec.n[1];
      const double *c1 = &cos_t[0][(size_t) kvec.n[0] * nlocal];
      const double *s1 = &sin_t[0][(size_t) kvec.n[0] * nlocal];
      const double *c2 = &cos_t[1][(size_t) kvec.n[1] * nlocal];
      const double *s2 = &sin_t[1][(size_t) kvec.n[1] * nlocal];
#pragma omp simd
      for (int i = 0; i < nlocal; i++) {
        row_c[i] = c1[i] * c2[i] - s1[i] * s2[i];
        row_s[i] = c1[i] * s2[i] + s1[i] * c2[i];
      }
    }
    c3 = &cos_t[2][(size_t) kvec.n[2] * nlocal];
    s3 = &sin_t[2][(size_t) kvec.n[2] * nlocal];
  };
  const double *rc = row_c.data(), *rs = row_s.data(), *c3, *s3;
  const double *q = v.data();
  // structure factors S(k) = A + iB over the owned atoms of every process, and sum v
  std::vector<double> local(2 * nk + 1, 0.0), sf(2 * nk + 1);
  for (size_t kk = 0; kk < nk; kk++) {
    select(kv[kk], c3, s3);
    double re = 0.0, im = 0.0;
#pragma omp simd reduction(+ : re, im)
    for (int i = 0; i < nlocal; i++) {
      re += q[i] * (rc[i] * c3[i] - rs[i] * s3[i]);
      im += q[i] * (rc[i] * s3[i] + rs[i] * c3[i]);
    }
    local[2 * kk] = re, local[2 * kk + 1] = im;
  }
  for (int i = 0; i < nlocal; i++) local[2 * nk] += q[i];
  MPI_Allreduce(local.data(), sf.data(), (int) (2 * nk + 1), MPI_DOUBLE, MPI_SUM, world);
  const double total = sf[2 * nk];
  const double background = k_e * M_PI * sigma2 / ewald_volume;
  // potentials and forces of the owned atoms
  if (phi != nullptr || force_sign != 0.0) {
    std::vector<double> pk(nlocal, 0.0);
    std::vector<double> fk[3] = {std::vector<double>(nlocal, 0.0),
                                 std::vector<double>(nlocal, 0.0),
                                 std::vector<double>(nlocal, 0.0)};
    double *fx = fk[0].data(), *fy = fk[1].data(), *fz = fk[2].data(), *p = pk.data();
    row[0] = row[1] = -1;
    for (size_t kk = 0; kk < nk; kk++) {
      const KVector &kvec = kv[kk];
      select(kvec, c3, s3);
      const double ga = 2.0 * kvec.g * sf[2 * kk], gb = 2.0 * kvec.g * sf[2 * kk + 1];
#pragma omp simd
      for (int i = 0; i < nlocal; i++) {
        const double c = rc[i] * c3[i] - rs[i] * s3[i], s = rc[i] * s3[i] + rs[i] * c3[i];
        p[i] += ga * c + gb * s;
        const double t = q[i] * (ga * s - gb * c);
        fx[i] += t * kvec.k[0];
        fy[i] += t * kvec.k[1];
        fz[i] += t * kvec.k[2];
      }
    }
    const double self = k_e / (std::sqrt(2.0 * M_PI) * smearing);
    if (phi != nullptr) {
      phi->resize(nlocal);
      for (int i = 0; i < nlocal; i++)
        (*phi)[i] = pk[i] - 2.0 * self * q[i] - 2.0 * background * total;
    }
    if (force_sign != 0.0 && forces_out != nullptr)    // (nlocal, 3), row-major
      for (int i = 0; i < nlocal; i++)
        for (int c = 0; c < 3; c++) forces_out[3 * i + c] += force_sign * fk[c][i];
    else if (force_sign != 0.0)
      for (int i = 0; i < nlocal; i++)
        for (int c = 0; c < 3; c++) f[i][c] += force_sign * fk[c][i];
  }
  // W = sum_k G |S|^2 (1 - 2 k k^T (1/k^2 + sigma^2/2)) + E_background 1 (global: rank 0)
  if (virial_sign != 0.0 && vflag_global && comm->me == 0) {
    double w[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const int pairs[6][2] = {{0, 0}, {1, 1}, {2, 2}, {0, 1}, {0, 2}, {1, 2}};
    for (size_t kk = 0; kk < nk; kk++) {
      const KVector &kvec = kv[kk];
      const double k2 = kvec.k[0] * kvec.k[0] + kvec.k[1] * kvec.k[1] + kvec.k[2] * kvec.k[2];
      const double s2 = kvec.g * (sf[2 * kk] * sf[2 * kk] + sf[2 * kk + 1] * sf[2 * kk + 1]);
      const double c = 2.0 * s2 * (1.0 / k2 + 0.5 * sigma2);
      for (int m = 0; m < 6; m++) w[m] -= c * kvec.k[pairs[m][0]] * kvec.k[pairs[m][1]];
      for (int m = 0; m < 3; m++) w[m] += s2;
    }
    for (int m = 0; m < 3; m++) w[m] -= background * total * total;
    for (int m = 0; m < 6; m++) virial[m] += virial_sign * w[m];
  }
}

int PairNNIP::pack_reverse_comm(int n, int first, double *buf)
{
  const int width = 3 * committee;
  int m = 0;
  for (int i = first; i < first + n; i++)
    for (int c = 0; c < width; c++) buf[m++] = member_f[(size_t) i * width + c];
  return m;
}

void PairNNIP::unpack_reverse_comm(int n, int *list, double *buf)
{
  const int width = 3 * committee;
  int m = 0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < width; c++) member_f[(size_t) list[i] * width + c] += buf[m++];
}
