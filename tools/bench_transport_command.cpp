#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int bench_transport_main(int, char**) { throw std::runtime_error("not built yet"); }

}  // namespace xmesh::tools
