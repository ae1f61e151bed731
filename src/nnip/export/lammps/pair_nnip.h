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

 protected:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
  std::vector<long> type_z;    // atomic number per LAMMPS type (index 1..ntypes), 0: NULL
  std::vector<std::string> model_elements;    // the package's elements, in its order
  std::string lammps_d3;    // the D3 pair style the model needs overlaid (empty: none)
  double cutoff = 0.0;         // Å, the model's neighbour cutoff
  double ghost_cutoff = 0.0;   // Å, layers x cutoff
  int committee = 0;
  double calibration = 1.0;    // factor on the committee's spread
  int uncertainty_index = -1;  // per-atom property d_nnip_uncertainty (committees)
  std::vector<double> member_f;    // (nall, 3 x committee) members' forces, reverse-summed
  void allocate();
};

}    // namespace LAMMPS_NS

#endif
#endif
