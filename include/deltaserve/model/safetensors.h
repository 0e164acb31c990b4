// Zero-copy safetensors reading. A SafetensorsFile mmaps one shard and validates its header (length,
// JSON, dtypes, shapes, offsets against the file size) so a corrupt or truncated file becomes a one-line
// Status, never a crash. WeightStorage owns every mapping of a checkpoint directory (the shards named by
// model.safetensors.index.json plus any other *.safetensors on disk) and maps tensor name -> view.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/model/model_desc.h"

namespace ds::model {

// Parses a complete safetensors image (8-byte header length, JSON header, data). `label` names the
// file in error messages. The returned views point into `data`.
Result<std::vector<TensorView>> parse_safetensors(const uint8_t* data, size_t size, const std::string& label);

class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  size_t file_bytes() const { return size_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
};

class WeightStorage {
 public:
  // Opens every shard of `dir`. With an index, each listed tensor must be in the shard the index names;
  // shards on disk that the index does not mention are opened too. A tensor name found in two shards
  // is an error. A directory without any *.safetensors gives an empty storage (even with an index).
  static Result<std::shared_ptr<WeightStorage>> open_dir(const std::string& dir);

  const TensorView* find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  std::vector<std::string> shard_paths() const;
  // Shards present on disk but not named by model.safetensors.index.json.
  const std::vector<std::string>& unindexed_shards() const { return unindexed_; }
  bool empty() const { return files_.empty(); }
  size_t total_bytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> tensors_;
  std::vector<std::string> unindexed_;
};

}  // namespace ds::model
