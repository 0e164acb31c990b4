// Loading a checkpoint into a ModelDesc (no compute): resolve MODEL to a directory, read config.json /
// generation_config.json, mmap the safetensors shards, resolve every quantization rule per module and
// check it against the tensors present (shapes, dtypes, packing). Any disagreement is a one-line Status
// naming the module or tensor. Without weights on disk it can describe the model from config.json alone
// (sizes estimated from shapes + scheme), which is what `deltaserve inspect` does for config-only dirs.
#pragma once

#include <string>

#include "deltaserve/core/status.h"
#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/safetensors.h"  // ModelDesc::storage

namespace ds::model {

struct LoadOptions {
  std::string revision = "main";  // HF cache revision (resolve.h)
  bool config_only = false;       // ignore weights on disk; estimate from config.json
  bool allow_config_only = false; // no *.safetensors in the directory: fall back to config-only
  bool load_mtp = true;           // bind mtp.* into ModelDesc::mtp when present
  bool load_vision = true;        // record model.visual.* in ModelDesc::vision_tensors
};

Result<ModelDesc> load_model(const std::string& model_arg, const LoadOptions& options = {});

// Same, for an already-resolved local directory.
Result<ModelDesc> load_model_dir(const std::string& dir, const LoadOptions& options = {});

}  // namespace ds::model
