// decode_graph_plan: which decode batch sizes serve captures as graphs, from vLLM's flags
// (CompilationConfig: cudagraph_mode, cudagraph_capture_sizes, max_cudagraph_capture_size; the older
// --cuda-graph-sizes and --max-seq-len-to-capture; --enforce-eager; -O0).
#include <algorithm>
#include <cctype>

#include "deltaserve/server/cli_args.h"

namespace ds::server {

namespace {

Result<std::vector<int>> int_list(const nlohmann::json& j, const char* key) {
  std::vector<int> v;
  if (!j.is_array())
    return invalid_argument(std::string("--compilation-config ") + key + ": expected a list of integers");
  for (const auto& x : j) {
    if (!x.is_number_integer() || x.get<int64_t>() < 1 || x.get<int64_t>() > (1 << 20))
      return invalid_argument(std::string("--compilation-config ") + key +
                              ": expected positive integers, got " + x.dump());
    v.push_back(x.get<int>());
  }
  return v;
}

}  // namespace

Result<DecodeGraphPlan> decode_graph_plan(const ServeArgs& a, int max_num_seqs, int64_t max_model_len) {
  DecodeGraphPlan p;
  const nlohmann::json& cc = a.compilation_config;
  std::string mode = "FULL_AND_PIECEWISE";
  if (auto it = cc.find("cudagraph_mode"); it != cc.end()) {
    if (!it->is_string()) return invalid_argument("--compilation-config cudagraph_mode: expected a string");
    mode = it->get<std::string>();
    std::transform(mode.begin(), mode.end(), mode.begin(), [](unsigned char c) { return std::toupper(c); });
    static const char* kModes[] = {"NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE"};
    if (std::find_if(std::begin(kModes), std::end(kModes), [&](const char* m) { return mode == m; }) ==
        std::end(kModes))
      return invalid_argument("--compilation-config cudagraph_mode: '" + mode +
                              "' is not one of NONE, PIECEWISE, FULL, FULL_DECODE_ONLY, FULL_AND_PIECEWISE");
  }
  int level = -1;
  for (const char* k : {"level", "mode"})
    if (auto it = cc.find(k); it != cc.end() && it->is_number_integer()) level = it->get<int>();
  if (a.enforce_eager)
    p.reason_none = "--enforce-eager";
  else if (mode == "NONE")
    p.reason_none = "cudagraph_mode NONE";
  else if (level == 0)
    p.reason_none = "-O0";
  if (!p.reason_none.empty()) return p;

  std::vector<int> sizes;
  if (auto it = cc.find("cudagraph_capture_sizes"); it != cc.end()) {
    DS_ASSIGN_OR_RETURN(sizes, int_list(*it, "cudagraph_capture_sizes"));
  } else if (a.cuda_graph_sizes.size() > 1) {
    sizes = a.cuda_graph_sizes;
  }
  int max_size = std::min(2 * max_num_seqs, 512);
  if (a.cuda_graph_sizes.size() == 1) max_size = a.cuda_graph_sizes[0];  // one value: the largest size
  if (!sizes.empty()) max_size = *std::max_element(sizes.begin(), sizes.end());
  if (auto it = cc.find("max_cudagraph_capture_size"); it != cc.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return invalid_argument(
          "--compilation-config max_cudagraph_capture_size: expected a non-negative integer");
    max_size = it->get<int>();
  }
  if (a.max_cudagraph_capture_size) max_size = *a.max_cudagraph_capture_size;
  if (sizes.empty()) {
    for (int s : {1, 2, 4}) sizes.push_back(s);
    for (int s = 8; s < 256; s += 8) sizes.push_back(s);
    for (int s = 256; s <= max_size; s += 16) sizes.push_back(s);
  }
  for (int s : sizes)
    if (s <= max_size && s <= max_num_seqs) p.sizes.push_back(s);
  std::sort(p.sizes.begin(), p.sizes.end());
  p.sizes.erase(std::unique(p.sizes.begin(), p.sizes.end()), p.sizes.end());
  if (p.sizes.empty())
    p.reason_none = "no capture size at or below max_num_seqs / max_cudagraph_capture_size";
  p.max_context = std::min<int64_t>(a.max_seq_len_to_capture.value_or(8192), max_model_len);
  return p;
}

}  // namespace ds::server
