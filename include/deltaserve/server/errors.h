// OpenAI / vLLM error envelope: {"error":{"message","type","param","code"}} with code = the HTTP
// status as an int, and the status-code mapping of deltaserve Status values.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "deltaserve/core/status.h"

namespace ds::server {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type;  // empty: derived from status (BadRequestError, NotFoundError, ...)
  std::optional<std::string> param;

  nlohmann::json to_json() const;
};

ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt);
ApiError not_found_error(std::string message, std::optional<std::string> param = std::nullopt);
ApiError from_status(const Status& st);  // invalid argument -> 400, not found -> 404, else 500
const char* error_type_for(int status);

// JSON text that never throws on invalid UTF-8 (replaced with U+FFFD).
std::string dump_json(const nlohmann::json& j);

// j[key] when j is an object and the value is a string, else dflt (never throws).
inline std::string json_str(const nlohmann::json& j, const char* key, const std::string& dflt = "") {
  if (!j.is_object()) return dflt;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

}  // namespace ds::server
