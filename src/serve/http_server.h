#pragma once
// The OpenAI-compatible HTTP API over the scheduler (cpp-httplib): /v1/completions,
// /v1/chat/completions (the model's chat template), /v1/models, /health, /metrics. Requests
// are parsed and prepared on the HTTP threads; generations run on the scheduler's thread;
// streamed responses are server-sent events of the text as it becomes final.
#include <atomic>
#include <memory>
#include <string>

#include "io/tokenizer.h"
#include "models/model.h"
#include "serve/generation_setup.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"

namespace httplib {
class Server;
}

namespace mosaic::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see HttpServer::port)
  std::string api_key;  // non-empty: /v1/* need "Authorization: Bearer <key>"
  std::string model_name;
  ServeDefaults defaults;
  SchedulerOptions scheduler;
  size_t max_body_bytes = size_t{8} << 20;
};

class HttpServer {
 public:
  HttpServer(Model& model, const io::Tokenizer& tok, ServerOptions o);
  ~HttpServer();
  // Binds the address (throws naming it when it cannot); port() then answers.
  void bind();
  int port() const { return port_; }
  // Serves until drain_and_stop(); returns then.
  void listen();
  // Stops taking generations (503), waits for those admitted and for their responses to be
  // written (up to 30 s), then stops the listener (waiting for listen() to have started).
  void drain_and_stop();
  bool listened() const { return listened_; }
  Metrics& metrics() { return metrics_; }

 private:
  void routes();

  Model& model_;
  const io::Tokenizer& tok_;
  ServerOptions o_;
  Metrics metrics_;
  Scheduler scheduler_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  int64_t created_ = 0;
  std::atomic<int> open_responses_{0};
  std::atomic<bool> listened_{false};
};

}  // namespace mosaic::serve
