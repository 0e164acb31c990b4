// Turns the MODEL argument (a local directory or a Hugging Face repo id) into a local directory:
// a directory is used as is; "ORG/NAME" is looked up in the HF cache ($HF_HOME/hub or
// ~/.cache/huggingface/hub: models--ORG--NAME/refs/<revision> -> snapshots/<rev>). Never downloads.
#pragma once

#include <string>

#include "deltaserve/core/status.h"

namespace ds::model {

// revision: a branch/tag name under refs/ (default "main") or a commit hash under snapshots/.
// The error names every place that was looked at.
Result<std::string> resolve_model_dir(const std::string& model, const std::string& revision = "main");

}  // namespace ds::model
