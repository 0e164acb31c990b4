#include "deltaserve/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace ds::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The reference implementation refuses headers above 100 MB; a real 122B index header is ~3 MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

bool read_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

Result<std::vector<TensorView>> parse_safetensors(const uint8_t* data, size_t size, const std::string& label) {
  if (size < 8)
    return corrupt(label + ": not a safetensors file (" + std::to_string(size) + " bytes, need at least 8)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];  // little-endian u64
  if (header_len > size - 8)
    return corrupt(label + ": header length " + std::to_string(header_len) + " exceeds the file size " +
                   std::to_string(size) + " (truncated or not a safetensors file)");
  if (header_len > kMaxHeaderBytes)
    return corrupt(label + ": header length " + std::to_string(header_len) + " is larger than 100 MB");

  const char* text = reinterpret_cast<const char*>(data + 8);
  json header = json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return corrupt(label + ": header is not a valid JSON object");

  const uint8_t* base = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<TensorView> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  out.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& e = it.value();
    const std::string where = label + ": tensor '" + name + "'";
    if (!e.is_object()) return corrupt(where + " has a non-object header entry");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string() || sh == e.end() || !sh->is_array() || off == e.end() ||
        !off->is_array() || off->size() != 2)
      return corrupt(where + " needs dtype, shape and data_offsets [begin, end]");
    TensorView v;
    v.name = name;
    v.dtype = dtype_from_safetensors(dt->get<std::string>());
    if (v.dtype == DType::kUnknown)
      return unsupported(where + " has unsupported dtype " + dt->get<std::string>());
    uint64_t numel = 1;
    for (const json& d : *sh) {
      uint64_t n = 0;
      if (!read_u64(d, &n)) return corrupt(where + " has a shape entry that is not a non-negative integer");
      if (n > (1ull << 48) || __builtin_mul_overflow(numel, n, &numel))
        return corrupt(where + " has an impossibly large shape");
      v.shape.push_back(static_cast<int64_t>(n));
    }
    uint64_t begin = 0, end = 0;
    if (!read_u64((*off)[0], &begin) || !read_u64((*off)[1], &end) || end < begin)
      return corrupt(where + " has invalid data_offsets");
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(v.dtype)), &nbytes))
      return corrupt(where + " has an impossibly large shape");
    if (end - begin != nbytes) {
      std::ostringstream os;
      os << where << ": data_offsets span " << (end - begin) << " bytes but dtype " << dtype_name(v.dtype)
         << " and shape [";
      for (size_t i = 0; i < v.shape.size(); ++i) os << (i ? ", " : "") << v.shape[i];
      os << "] need " << nbytes;
      return corrupt(os.str());
    }
    if (end > data_size)
      return corrupt(where + " extends to byte " + std::to_string(end) + " but the data section has only " +
                     std::to_string(data_size) + " bytes (truncated file?)");
    v.data = base + begin;
    v.nbytes = nbytes;
    ranges.emplace_back(begin, end);
    out.push_back(std::move(v));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second && ranges[i].second > ranges[i].first)
      return corrupt(label + ": tensors overlap at byte " + std::to_string(ranges[i].first));
  // Zero-size tensors have no bytes; give them a non-null pointer so present() holds.
  for (auto& v : out)
    if (v.nbytes == 0) v.data = base;
  return out;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return not_found(path + ": cannot stat (" + std::strerror(err) + ")");
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return corrupt(base_name(path) + ": not a safetensors file (" + std::to_string(f->size_) +
                   " bytes, need at least 8)");
  }
  void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return internal_error(path + ": mmap failed (" + std::strerror(errno) + ")");
  f->map_ = m;
  auto tensors = parse_safetensors(static_cast<const uint8_t*>(m), f->size_, base_name(path));
  if (!tensors) return tensors.status();  // f's destructor unmaps
  f->tensors_ = std::move(tensors).value();
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

Result<std::shared_ptr<WeightStorage>> WeightStorage::open_dir(const std::string& dir) {
  auto storage = std::make_shared<WeightStorage>();
  std::error_code ec;
  std::vector<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 12 && n.ends_with(".safetensors") && e.is_regular_file(ec)) on_disk.push_back(n);
  }
  if (ec) return not_found(dir + ": cannot list directory (" + ec.message() + ")");
  std::sort(on_disk.begin(), on_disk.end());
  // No shard at all (a config-only download that kept the index): an empty storage, not a missing shard.
  if (on_disk.empty()) return storage;

  // index: tensor -> shard, and the shard order it implies
  std::map<std::string, std::string> index;
  std::vector<std::string> indexed_shards;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return corrupt("model.safetensors.index.json: not valid JSON with a weight_map object");
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return corrupt("model.safetensors.index.json: weight_map['" + it.key() + "'] is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        return corrupt("model.safetensors.index.json: shard name '" + shard + "' is not a plain file name");
      index[it.key()] = shard;
      if (seen.insert(shard).second) indexed_shards.push_back(shard);
    }
    for (const auto& s : indexed_shards)
      if (!fs::exists(dir + "/" + s, ec))
        return not_found("shard " + s + " named by model.safetensors.index.json is missing from " + dir);
  }
  std::vector<std::string> order = indexed_shards;
  for (const auto& n : on_disk)
    if (std::find(indexed_shards.begin(), indexed_shards.end(), n) == indexed_shards.end()) {
      order.push_back(n);
      if (!index.empty()) storage->unindexed_.push_back(n);
    }

  std::map<std::string, std::string> where;  // tensor -> shard it was found in
  for (const auto& shard : order) {
    auto f = SafetensorsFile::open(dir + "/" + shard);
    if (!f) return f.status();
    for (const auto& t : (*f)->tensors()) {
      auto [it, inserted] = where.emplace(t.name, shard);
      if (!inserted)
        return corrupt("duplicate tensor '" + t.name + "' in " + it->second + " and " + shard);
      storage->tensors_.emplace(t.name, t);
    }
    storage->files_.push_back(std::move(f).value());
  }
  for (const auto& [name, shard] : index) {
    auto it = where.find(name);
    if (it == where.end())
      return not_found("tensor '" + name + "' listed in model.safetensors.index.json is missing from " + shard);
    if (it->second != shard)
      return corrupt("tensor '" + name + "' is in " + it->second + " but the index says " + shard);
  }
  return storage;
}

const TensorView* WeightStorage::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> WeightStorage::shard_paths() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

size_t WeightStorage::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.nbytes;
  return n;
}

}  // namespace ds::model
