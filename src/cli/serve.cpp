// mosaic serve: the OpenAI-compatible HTTP server (serve/) over one loaded model.
#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "models/kv_cache.h"
#include "serve/http_server.h"

namespace mosaic::cli {

namespace {

// SIGINT/SIGTERM: the handler (any thread may take it; OpenBLAS starts its threads before
// main) writes the signal to a pipe that one thread reads and drains the server from.
int signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &c, 1);
}

struct ServeFlags {
  SessionFlags session;
  std::string host = "127.0.0.1", api_key, model_name, cache = "none";
  int port = 8000, max_batch = 8, queue = 64;
  int64_t max_tokens = 128;
  bool quiet = false;
};

void run_serve(const ServeFlags& f) {
  MOSAIC_CHECK(f.port >= 0 && f.port <= 65535, "--port {} is not a port (0 to 65535; 0 picks a free one)", f.port);
  MOSAIC_CHECK(f.max_batch >= 1, "--max-batch must be at least 1 (got {})", f.max_batch);
  MOSAIC_CHECK(f.queue >= 0, "--queue must be >= 0 (got {})", f.queue);
  MOSAIC_CHECK(f.max_tokens >= 1, "--max-tokens must be at least 1 (got {})", f.max_tokens);
  parse_cache_mode(f.cache);
  const std::string key = !f.api_key.empty() ? f.api_key : std::getenv("MOSAIC_API_KEY") ? std::getenv("MOSAIC_API_KEY") : "";

  Session s(f.session, !f.quiet);
  MOSAIC_CHECK(s.has_tokenizer(), "model directory '{}' has no tokenizer.json: the server needs one", s.model().dir());
  serve::ServerOptions o;
  o.host = f.host;
  o.port = f.port;
  o.api_key = key;
  o.model_name = f.model_name.empty() ? std::filesystem::path(s.model().dir()).filename().string() : f.model_name;
  if (o.model_name.empty()) o.model_name = std::filesystem::path(s.model().dir()).parent_path().filename().string();
  o.defaults.max_tokens = f.max_tokens;
  o.defaults.cache = f.cache;
  o.scheduler.max_batch = f.max_batch;
  o.scheduler.queue = f.queue;
  serve::HttpServer server(s.model(), s.tokenizer(), o);
  server.bind();
  // The handlers are in place before the address line: a script may signal as soon as it reads it.
  MOSAIC_CHECK(pipe(signal_pipe) == 0, "cannot create the signal pipe");
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::thread waiter([&] {
    char sig = 0;
    while (read(signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig == 0) return;  // listen() returned by itself
    // A second signal ends the process at once (the default action) if the drain takes too long.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (!f.quiet) fmt::print(stderr, "mosaic: {} received: finishing the admitted generations, then exiting (again "
                             "to exit now)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server.drain_and_stop();
  });
  // The address line is the contract scripts wait for (port 0 picks one).
  fmt::print("mosaic: serving {} on http://{}:{} (max batch {}, queue {}{})\n", o.model_name, f.host, server.port(),
             f.max_batch, f.queue, key.empty() ? "" : ", API key required");
  std::fflush(stdout);
  server.listen();
  const char wake = 0;
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &wake, 1);  // wakes the waiter if no signal came
  waiter.join();
  if (!f.quiet) fmt::print(stderr, "mosaic: server stopped\n");
}

}  // namespace

void add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* c = app.add_subcommand(
      "serve", "Serve the model over HTTP with OpenAI's API: /v1/completions, /v1/chat/completions, /v1/models, "
               "/health, /metrics. Diffusion options (steps, block_length, alg, remasking, threshold, cache, "
               "cfg_scale, top_k) are extra fields of the request body. SIGTERM/SIGINT finish the admitted "
               "requests, then exit");
  add_session_flags(c, f->session);
  c->add_option("--host", f->host, "Address to listen on")->capture_default_str();
  c->add_option("--port", f->port, "Port to listen on (0: a free one, printed on start)")->capture_default_str();
  c->add_option("--max-batch", f->max_batch, "Generations denoised concurrently (they take turns block by block)")
      ->capture_default_str();
  c->add_option("--queue", f->queue, "Generations that may wait beyond --max-batch; more get HTTP 429")
      ->capture_default_str();
  c->add_option("--api-key", f->api_key,
                "Require 'Authorization: Bearer KEY' on /v1/* (default: $MOSAIC_API_KEY; unset: no key)");
  c->add_option("--served-model-name", f->model_name, "The model's id in the API (default: the model directory's name)");
  c->add_option("--max-tokens", f->max_tokens, "max_tokens of requests that do not give it")->capture_default_str();
  c->add_option("--cache", f->cache, "cache of requests that do not give one: none | prefix | dual | sparse")
      ->capture_default_str();
  c->add_flag("-q,--quiet", f->quiet, "No progress output on stderr");
  c->callback([f] { run_serve(*f); });
}

}  // namespace mosaic::cli
