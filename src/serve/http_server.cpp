#include "serve/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <thread>

#include "core/error.h"
#include "serve/api_error.h"
#include "serve/completion_request.h"

namespace mosaic::serve {

namespace {

using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Text from clients (a path, a prompt quoted in an error) may not be UTF-8: replaced, never thrown.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// The endpoint label of a path in /metrics: a known route, else "other" (labels stay few and safe).
std::string endpoint(const std::string& path) {
  for (const char* known : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == known) return path;
  return "other";
}

json usage(const JobEvent& done) {
  return {{"prompt_tokens", done.prompt_tokens},
          {"completion_tokens", done.completion_tokens},
          {"total_tokens", done.prompt_tokens + done.completion_tokens}};
}

// One choice of a streamed chunk: its text (completions) or delta (chat).
json chunk_choice(bool chat, const std::string& text, bool first, const json& finish_reason) {
  json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    c["delta"] = delta;
  } else {
    c["text"] = text;
  }
  return c;
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

HttpServer::HttpServer(Model& model, const io::Tokenizer& tok, ServerOptions o)
    : model_(model), tok_(tok), o_(std::move(o)), scheduler_(model, metrics_, o_.scheduler),
      http_(std::make_unique<httplib::Server>()), created_(unix_now()) {
  metrics_.set_weight_bytes(model_.backend().weight_bytes());
  // Every waiting or streaming client holds an HTTP thread: room for all the scheduler admits.
  const size_t threads = static_cast<size_t>(o_.scheduler.max_batch + o_.scheduler.queue) + 8;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(o_.max_body_bytes);
  routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  if (o_.port == 0)
    port_ = http_->bind_to_any_port(o_.host);
  else
    port_ = http_->bind_to_port(o_.host, o_.port) ? o_.port : -1;
  MOSAIC_CHECK(port_ > 0, "cannot listen on {}:{} (in use, or not an address of this machine): give --host/--port",
               o_.host, o_.port);
}

void HttpServer::listen() {
  http_->listen_after_bind();
  listened_ = true;
}

void HttpServer::drain_and_stop() {
  scheduler_.drain();
  // The generations are done; their last events may still be on the way to the clients.
  for (int i = 0; i < 3000 && open_responses_ > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // stop() does nothing before listen() runs: wait for it to (or to have returned).
  while (!http_->is_running() && !listened_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http_->stop();
}

void HttpServer::routes() {
  httplib::Server& s = *http_;
  // Errors as OpenAI error objects; routes that do not exist, bodies too large.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    const std::string msg = status == 404   ? fmt::format("no route {} {}", req.method, req.path)
                            : status == 413 ? fmt::format("the request body is larger than {} bytes", o_.max_body_bytes)
                                            : fmt::format("HTTP {}", status);
    send_json(res, status, ApiError(status, msg, "", status == 404 ? "not_found" : "").body());
    metrics_.count_request(endpoint(req.path), status);
  });
  s.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    send_json(res, 500, ApiError(500, msg).body());
    metrics_.count_request(endpoint(req.path), 500);
  });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool draining = scheduler_.draining();
    send_json(res, draining ? 503 : 200, {{"status", draining ? "draining" : "ok"}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });

  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (o_.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + o_.api_key) return true;
    const ApiError e(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'", "",
                     "invalid_api_key");
    send_json(res, 401, e.body());
    metrics_.count_request(endpoint(req.path), 401);
    return false;
  };

  s.Get("/v1/models", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    send_json(res, 200,
              {{"object", "list"},
               {"data", json::array({{{"id", o_.model_name}, {"object", "model"}, {"created", created_},
                                      {"owned_by", "mosaic"}}})}});
    metrics_.count_request(req.path, 200);
  });

  auto completion = [this, authorized](bool chat) {
    return [this, authorized, chat](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      std::shared_ptr<GenerationJob> job;
      CompletionRequest r;
      try {
        r = parse_completion_request(req.body, chat);
        if (!r.model.empty() && r.model != o_.model_name)
          throw ApiError(404, fmt::format("the model '{}' does not exist: this server serves '{}'", r.model,
                                          o_.model_name), "model", "model_not_found");
        job = std::make_shared<GenerationJob>(prepare_generation(model_, tok_, r, o_.defaults), tok_);
        scheduler_.submit(job);
      } catch (const ApiError& e) {
        send_json(res, e.status(), e.body());
        metrics_.count_request(endpoint(req.path), e.status());
        return;
      }
      // Open until its last byte is written: the drain waits for it.
      open_responses_++;
      const std::string route = endpoint(req.path);
      const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", job->id());
      const json head = {{"id", id},
                         {"object", chat ? (r.stream ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
                         {"created", unix_now()},
                         {"model", o_.model_name}};
      if (!r.stream) {
        struct Closed {
          std::atomic<int>& n;
          ~Closed() { n--; }
        } closed{open_responses_};
        std::string text;
        for (JobEvent ev;;) {
          if (!job->next(ev, std::chrono::milliseconds(200))) continue;
          if (ev.kind == JobEvent::Kind::Text) {
            text += ev.text;
            continue;
          }
          if (ev.kind == JobEvent::Kind::Error) {  // counted with the status it ends with
            send_json(res, ev.status, ev.error);
            metrics_.count_request(route, ev.status);
            return;
          }
          json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", ev.finish_reason}};
          if (chat)
            choice["message"] = {{"role", "assistant"}, {"content", text}};
          else
            choice["text"] = text;
          json body = head;
          body["choices"] = json::array({choice});
          body["usage"] = usage(ev);
          send_json(res, 200, body);
          metrics_.count_request(route, 200);
          return;
        }
      }
      // A stream's status is sent with its first byte: 200, whatever follows.
      metrics_.count_request(route, 200);
      const bool include_usage = r.include_usage;
      auto first = std::make_shared<bool>(true);
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [job, head, chat, include_usage, first](size_t, httplib::DataSink& sink) {
            try {  // httplib calls this outside its own try
              JobEvent ev;
              if (!job->next(ev, std::chrono::milliseconds(100))) {
                if (!sink.is_writable()) {
                  job->cancel();
                  return false;
                }
                return true;
              }
              json chunk = head;
              if (include_usage) chunk["usage"] = nullptr;  // OpenAI's chunks before the usage chunk
              std::string out;
              if (ev.kind == JobEvent::Kind::Text) {
                chunk["choices"] = json::array({chunk_choice(chat, ev.text, *first, nullptr)});
                *first = false;
                out = sse(chunk);
                const bool ok = sink.write(out.data(), out.size());
                if (!ok) job->cancel();
                return ok;
              }
              if (ev.kind == JobEvent::Kind::Error) {
                out = sse(ev.error);
              } else {
                chunk["choices"] = json::array({chunk_choice(chat, "", *first, ev.finish_reason)});
                out = sse(chunk);
                if (include_usage) {
                  json u = head;
                  u["choices"] = json::array();
                  u["usage"] = usage(ev);
                  out += sse(u);
                }
              }
              out += "data: [DONE]\n\n";
              sink.write(out.data(), out.size());
              sink.done();
              return true;
            } catch (const std::exception&) {
              job->cancel();
              return false;
            }
          },
          [this, job](bool success) {
            if (!success) job->cancel();
            open_responses_--;
          });
    };
  };
  s.Post("/v1/completions", completion(false));
  s.Post("/v1/chat/completions", completion(true));
}

}  // namespace mosaic::serve
