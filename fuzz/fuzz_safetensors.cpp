// safetensors fuzz target: parse_safetensors over an arbitrary file image (8-byte header length,
// JSON header, data). Bad files must come back as errors; returned views must lie inside the image.
#include <cstdint>
#include <string>

#include "deltaserve/model/safetensors.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = ds::model::parse_safetensors(data, size, "fuzz.safetensors");
  if (!r.is_ok()) return 0;
  for (const auto& t : r.value()) {
    const auto* b = static_cast<const uint8_t*>(t.data);
    if (t.nbytes == 0) continue;
    const bool inside = b >= data && static_cast<size_t>(b - data) <= size &&
                        t.nbytes <= size - static_cast<size_t>(b - data);
    DS_FUZZ_CHECK(inside, "tensor %s outside the image", t.name.c_str());
  }
  return 0;
}
