#include "deltaserve/server/errors.h"

namespace ds::server {

const char* error_type_for(int status) {
  switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 413: return "RequestEntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 503: return "ServiceUnavailableError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

nlohmann::json ApiError::to_json() const {
  nlohmann::json e = {{"message", message},
                      {"type", type.empty() ? error_type_for(status) : type},
                      {"param", param ? nlohmann::json(*param) : nlohmann::json(nullptr)},
                      {"code", status}};
  return {{"error", e}};
}

ApiError bad_request(std::string message, std::optional<std::string> param) {
  return {400, std::move(message), "", std::move(param)};
}

ApiError not_found_error(std::string message, std::optional<std::string> param) {
  return {404, std::move(message), "", std::move(param)};
}

ApiError from_status(const Status& st) {
  switch (st.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsupported: return bad_request(st.message());
    case ErrorCode::kNotFound: return not_found_error(st.message());
    default: return {500, st.message(), "", std::nullopt};
  }
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace ds::server
