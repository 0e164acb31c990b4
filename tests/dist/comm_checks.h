// The collective checks every Communicator passes, run on each rank by the thread-group tests
// (tests/runtime/comm_test.cpp) and the MPI tests (tests/dist/mpi_comm_test.cpp, under mpirun). Each
// rank compares its results with a reference computed on the host from every rank's known inputs.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/dtype.h"
#include "deltaserve/dist/communicator.h"

namespace ds::dist::test {

inline void store(DType dt, float v, void* p) {
  if (dt == DType::kF32) {
    std::memcpy(p, &v, 4);
    return;
  }
  const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

inline float load(DType dt, const void* p) {
  if (dt == DType::kF32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dt == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

inline float rounded(DType dt, float v) {
  unsigned char b[4];
  store(dt, v, b);
  return load(dt, b);
}

// Rank r's partial at (i, j): scales that differ by rank, so the fp32 sum depends on its order.
inline float partial(int rank, int64_t i, int64_t j) {
  static const float kScale[] = {1.0f, 3.1e-3f, 1.7e3f, 0.37f, 5.3e-2f, 41.0f, 7.7e-4f, 2.9f};
  const uint32_t h = static_cast<uint32_t>(rank * 7919 + i * 104729 + j * 1299709) * 2654435761u;
  return (static_cast<float>(h % 20001) - 10000.0f) / 997.0f * kScale[rank % 8];
}

// The sum of every rank's partial at (i, j) as a rank would write it, added in `order`.
inline float reference_sum(DType dt, const std::vector<int>& order, int64_t i, int64_t j) {
  float acc = rounded(dt, partial(order[0], i, j));
  for (size_t k = 1; k < order.size(); ++k) acc += rounded(dt, partial(order[k], i, j));
  return rounded(dt, acc);
}

constexpr float kPadding = -12345.0f;  // in the columns past cols: no collective may touch it

// A rows x ld buffer whose first `cols` columns hold value(i, j) and the rest kPadding.
template <typename Value>
std::vector<unsigned char> padded(DType dt, int64_t rows, int64_t cols, int64_t ld, Value value) {
  const size_t esz = dtype_size(dt);
  std::vector<unsigned char> host(rows * ld * esz);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < ld; ++j) store(dt, j < cols ? value(i, j) : kPadding, &host[(i * ld + j) * esz]);
  return host;
}

inline void expect_same_on_every_rank(Communicator& c, const std::vector<unsigned char>& mine) {
  std::vector<unsigned char> all(mine.size() * c.size());
  ASSERT_TRUE(c.all_gather_host(mine.data(), mine.size(), all.data()).is_ok());
  for (int r = 0; r < c.size(); ++r)
    EXPECT_EQ(0, std::memcmp(all.data() + r * mine.size(), mine.data(), mine.size()))
        << "rank " << r << " differs";
}

// all_reduce_sum of a rows x cols view with leading dimension ld: the rank-ordered sum, bit for bit,
// the same on every rank, padding untouched.
inline void check_all_reduce(Communicator& c, backend::Backend& be, DType dt, int64_t rows, int64_t cols,
                             int64_t ld) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
               " ld " + std::to_string(ld) + " rank " + std::to_string(c.rank()) + " of " +
               std::to_string(c.size()));
  std::vector<unsigned char> host =
      padded(dt, rows, cols, ld, [&](int64_t i, int64_t j) { return partial(c.rank(), i, j); });
  auto buf = be.alloc(host.size(), "all_reduce test");
  ASSERT_TRUE(buf.is_ok());
  be.upload((*buf)->data(), host.data(), host.size());
  Status s = c.all_reduce_sum(be, backend::Act{(*buf)->data(), dt, rows, cols, ld});
  ASSERT_TRUE(s.is_ok()) << s.message();
  be.download(host.data(), (*buf)->data(), host.size());

  std::vector<int> order, reversed;
  for (int r = 0; r < c.size(); ++r) order.push_back(r);
  reversed.assign(order.rbegin(), order.rend());
  const std::vector<unsigned char> want =
      padded(dt, rows, cols, ld, [&](int64_t i, int64_t j) { return reference_sum(dt, order, i, j); });
  int order_matters = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      order_matters += reference_sum(dt, order, i, j) != reference_sum(dt, reversed, i, j);
  if (c.size() >= 3 && dt == DType::kF32) {  // a 16-bit result's rounding hides the fp32 order
    EXPECT_GT(order_matters, 0) << "the inputs cannot tell the rank order from another";
  }
  size_t bad = 0;
  const size_t esz = dtype_size(dt);
  for (size_t e = 0; e < host.size() / esz; ++e)
    if (std::memcmp(&host[e * esz], &want[e * esz], esz) != 0 && bad++ < 5) {
      ADD_FAILURE() << "element " << e / ld << "," << e % ld << ": got " << load(dt, &host[e * esz])
                    << " want " << load(dt, &want[e * esz]);
    }
  EXPECT_EQ(bad, 0u);
  expect_same_on_every_rank(c, host);
}

// Small integers: exact in every dtype, distinct per (rank, row, column) within a test's shapes.
inline float gathered_value(int rank, int64_t i, int64_t j) {
  return static_cast<float>(rank * 61 + i * 13 + j);
}

// all_gather_cols of rows x cols blocks (local ld local_ld) into rows x size*cols (ld out_ld).
inline void check_all_gather_cols(Communicator& c, backend::Backend& be, DType dt, int64_t rows, int64_t cols,
                                  int64_t local_ld, int64_t out_ld) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
               " rank " + std::to_string(c.rank()) + " of " + std::to_string(c.size()));
  const int64_t out_cols = cols * c.size();
  std::vector<unsigned char> local =
      padded(dt, rows, cols, local_ld, [&](int64_t i, int64_t j) { return gathered_value(c.rank(), i, j); });
  std::vector<unsigned char> out = padded(dt, rows, out_cols, out_ld, [](int64_t, int64_t) { return 0.0f; });
  auto lb = be.alloc(local.size(), "gather test local");
  auto ob = be.alloc(out.size(), "gather test out");
  ASSERT_TRUE(lb.is_ok() && ob.is_ok());
  be.upload((*lb)->data(), local.data(), local.size());
  be.upload((*ob)->data(), out.data(), out.size());
  Status s = c.all_gather_cols(be, backend::Act{(*lb)->data(), dt, rows, cols, local_ld},
                               backend::Act{(*ob)->data(), dt, rows, out_cols, out_ld});
  ASSERT_TRUE(s.is_ok()) << s.message();
  be.download(out.data(), (*ob)->data(), out.size());
  const std::vector<unsigned char> want = padded(dt, rows, out_cols, out_ld, [&](int64_t i, int64_t j) {
    return gathered_value(static_cast<int>(j / cols), i, j % cols);
  });
  EXPECT_EQ(out, want);
}

inline void check_broadcast_host(Communicator& c) {
  const int root = c.size() - 1;
  std::vector<unsigned char> data(37, 0);
  if (c.rank() == root)
    for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<unsigned char>(k * 7 + 3);
  ASSERT_TRUE(c.broadcast_host(data.data(), data.size(), root).is_ok());
  for (size_t k = 0; k < data.size(); ++k) EXPECT_EQ(data[k], static_cast<unsigned char>(k * 7 + 3)) << k;
}

inline void check_all_gather_host(Communicator& c) {
  const unsigned char mine[5] = {static_cast<unsigned char>(c.rank()), 1, 2, 3,
                                 static_cast<unsigned char>(200 + c.rank())};
  std::vector<unsigned char> all(5 * c.size(), 0xff);
  ASSERT_TRUE(c.all_gather_host(mine, 5, all.data()).is_ok());
  for (int r = 0; r < c.size(); ++r) {
    const unsigned char want[5] = {static_cast<unsigned char>(r), 1, 2, 3,
                                   static_cast<unsigned char>(200 + r)};
    EXPECT_EQ(0, std::memcmp(all.data() + 5 * r, want, 5)) << "rank " << r;
  }
}

// Every check above, in the same order on every rank.
inline void check_all(Communicator& c, backend::Backend& be) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    check_all_reduce(c, be, dt, 1, 64, 64);
    check_all_reduce(c, be, dt, 5, 37, 41);
    check_all_gather_cols(c, be, dt, 3, 11, 13, c.size() * 11 + 2);
  }
  check_all_gather_cols(c, be, DType::kF32, 1, 8, 8, c.size() * 8);
  check_broadcast_host(c);
  check_all_gather_host(c);
  EXPECT_TRUE(c.barrier().is_ok());
}

}  // namespace ds::dist::test
