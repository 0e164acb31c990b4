// What `deltaserve inspect MODEL` reports: architecture, layer pattern, dimensions, per-component
// storage format and bytes, per-module formats, and the per-GPU memory plan. Built once as JSON
// (`--json` prints it as is, tests read it) and rendered as text from that same JSON.
#pragma once

#include <string>

#include "deltaserve/core/status.h"
#include "deltaserve/model/config.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/memory_plan.h"

namespace ds::model {

struct InspectOptions {
  LoadOptions load;
  MemoryOptions memory;
  bool list_modules = false;  // every Linear module with its format (large for MoE models)
};

// Loads MODEL (weights, or config.json alone when there are none / --config-only) and builds the report.
Result<ordered_json> inspect_model(const std::string& model_arg, const InspectOptions& options);

// The report of an already loaded model.
Result<ordered_json> inspect_report(const ModelDesc& model, const InspectOptions& options);

std::string render_inspect_text(const ordered_json& report);

// "1.23 GiB", "512.0 MiB", "12.0 KiB", "17 B".
std::string format_bytes(uint64_t bytes);

}  // namespace ds::model
