// Interleaved partial M-RoPE tables (qwen35-arch.md §3.3), shared by host and device kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/gptq.h"  // DS_HD

namespace ds::kernels {

// Which position row (0 = t, 1 = h, 2 = w) drives frequency j, for mrope_section {s_t, s_h, s_w}
// interleaved as t,h,w,t,h,w,...: j%3==1 && j < 3*s_h -> h; j%3==2 && j < 3*s_w -> w; else t.
DS_HD inline int mrope_row(int j, const int32_t* section) {
  if (section == nullptr) return 0;
  if (j % 3 == 1 && j < 3 * section[1]) return 1;
  if (j % 3 == 2 && j < 3 * section[2]) return 2;
  return 0;
}

// inv_freq[j] = theta^(-2j/rot_dim), computed in fp32 as torch does (base ** (arange(0,R,2)/R)).
DS_HD inline float rope_inv_freq(int j, int rot_dim, double theta) {
  const float expo = static_cast<float>(2 * j) / static_cast<float>(rot_dim);
  return 1.0f / std::pow(static_cast<float>(theta), expo);
}

}  // namespace ds::kernels
