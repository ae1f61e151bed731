/* pair_style nnip: see pair_nnip.h. Written for nnip (MIT licence). */

#include "pair_nnip.h"

#include "atom.h"
#include "comm.h"
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

void PairNNIP::settings(int narg, char **)
{
  if (narg != 0) error->all(FLERR, "pair_style nnip takes no arguments");
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
  if (metadata["format"] != "nnip-aoti-1")
    error->all(FLERR, "{} is not an nnip compiled model (format '{}'; write it with "
               "`nnip export`)", arg[2], metadata["format"]);
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
    utils::logmesg(lmp, "pair_style nnip: {} (elements {}, cutoff {} Å, ghost cutoff {} Å{})\n",
                   arg[2], metadata["elements"], cutoff, ghost_cutoff,
                   committee > 0 ? fmt::format(", committee of {}", committee) : "");
}

void PairNNIP::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style nnip requires newton pair on");
  if (!model) error->all(FLERR, "pair_style nnip: no pair_coeff given");
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
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
  double **f = atom->f;
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

  std::vector<at::Tensor> out;
  try {
    out = model->run({positions, numbers, edge_index, shifts, cell, n_local});
  } catch (const std::exception &err) {
    error->one(FLERR, "pair_style nnip: the model failed: {}", err.what());
  }
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
