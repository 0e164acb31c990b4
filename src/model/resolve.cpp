#include "deltaserve/model/resolve.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ds::model {
namespace fs = std::filesystem;

static std::string hf_hub_dir() {
  if (const char* cache = std::getenv("HF_HUB_CACHE")) return cache;
  if (const char* home = std::getenv("HF_HOME")) return std::string(home) + "/hub";
  const char* user = std::getenv("HOME");
  return std::string(user ? user : "") + "/.cache/huggingface/hub";
}

Result<std::string> resolve_model_dir(const std::string& model, const std::string& revision) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) return fs::absolute(model, ec).lexically_normal().string();

  const size_t slash = model.find('/');
  const bool looks_like_repo = slash != std::string::npos && slash > 0 && slash + 1 < model.size() &&
                               model.find('/', slash + 1) == std::string::npos && model[0] != '.';
  if (!looks_like_repo)
    return not_found("model '" + model + "' not found: no such local directory");

  const std::string repo_dir =
      hf_hub_dir() + "/models--" + model.substr(0, slash) + "--" + model.substr(slash + 1);
  std::string rev = revision.empty() ? "main" : revision;
  std::ifstream ref(repo_dir + "/refs/" + rev);
  std::string snapshot = rev;
  if (ref) std::getline(ref, snapshot);
  const std::string dir = repo_dir + "/snapshots/" + snapshot;
  if (!snapshot.empty() && fs::is_directory(dir, ec)) return dir;
  return not_found("model '" + model + "' not found: no local directory of that name and no snapshot at " +
                   repo_dir + "/refs/" + rev + " -> snapshots/ (set HF_HOME or pass a local path)");
}

}  // namespace ds::model
