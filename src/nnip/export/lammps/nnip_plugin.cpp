/* Registers pair_style nnip with LAMMPS's plugin loader (plugin load / LAMMPS_PLUGIN_PATH). */

#include "lammpsplugin.h"

#include "lammps.h"
#include "pair_nnip.h"

using namespace LAMMPS_NS;

static Pair *nnip_creator(LAMMPS *lmp)
{
  return new PairNNIP(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = ((LAMMPS *) lmp)->version;    // built against this very LAMMPS
  plugin.style = "pair";
  plugin.name = "nnip";
  plugin.info = "nnip neural-network potential (AOTInductor package from `nnip export`)";
  plugin.author = "nnip developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &nnip_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
