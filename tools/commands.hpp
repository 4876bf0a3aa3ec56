// Every `xmesh` sub-command: `int <name>_main(int argc, char** argv)` gets the arguments after
// the sub-command's name. Errors are thrown (usage_error, std::exception) and printed by main.
#pragma once

namespace xmesh::tools {

int gen_model_main(int argc, char** argv);
int quantize_main(int argc, char** argv);
int eval_main(int argc, char** argv);
int generate_main(int argc, char** argv);
int bench_main(int argc, char** argv);
int plan_main(int argc, char** argv);
int tokenize_main(int argc, char** argv);
int node_main(int argc, char** argv);
int cluster_main(int argc, char** argv);
int prometheus_config_main(int argc, char** argv);
int trial_main(int argc, char** argv);
/// `xmesh bench transport ...` (argv after "transport").
int bench_transport_main(int argc, char** argv);

}  // namespace xmesh::tools
