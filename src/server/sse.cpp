#include "sse.h"

#include "deltaserve/server/errors.h"

namespace ds::server {

std::string sse_event(const nlohmann::json& j) { return "data: " + dump_json(j) + "\n\n"; }

void stream_sse(httplib::Response& res, std::shared_ptr<SseProducer> producer) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [producer](size_t, httplib::DataSink& sink) {
        std::string out;
        bool done = false;
        // Keep polling until something is ready so each provider call writes data; an idle call
        // returns after ~200 ms so a dead connection is noticed by the next write.
        done = producer->poll(&out, std::chrono::milliseconds(200));
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          producer->cancel();
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [producer](bool success) {
        if (!success) producer->cancel();
      });
}

}  // namespace ds::server
