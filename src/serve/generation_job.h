#pragma once
// One admitted request while it runs: its generation (sampler and sequence), the text sent so
// far, and the channel its HTTP thread reads: text as it becomes final, then the end (or an
// error). The scheduler's thread writes, the HTTP thread reads; a client that goes away
// cancels it and the scheduler drops it at its next turn.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>

#include "io/tokenizer.h"
#include "serve/api_error.h"
#include "serve/generation_setup.h"

namespace mosaic::serve {

struct JobEvent {
  enum class Kind { Text, Done, Error };
  Kind kind = Kind::Text;
  std::string text;           // Text: the newly final text
  std::string finish_reason;  // Done: "stop" (end of text or a stop string) or "length"
  int64_t prompt_tokens = 0, completion_tokens = 0;  // Done
  int status = 0;             // Error
  nlohmann::json error;       // Error: the body
};

class GenerationJob {
 public:
  GenerationJob(PreparedGeneration g, const io::Tokenizer& tok);

  PreparedGeneration& generation() { return g_; }
  int64_t id() const { return id_; }
  void set_id(int64_t id) { id_ = id; }
  std::chrono::steady_clock::time_point admitted() const { return admitted_; }
  // The planned key/value cache of this generation (its memory plan).
  size_t cache_bytes() const { return cache_bytes_; }
  void set_cache_bytes(size_t b) { cache_bytes_ = b; }

  // Scheduler side. After a step: sends the text that became final (generated tokens are
  // final up to the first position still masked), and ends the job at an end-of-text token,
  // a stop string or the end of the sequence. Returns whether the job is done.
  bool after_step();
  void fail(const ApiError& e);
  bool done() const { return done_; }

  // Client side: the next event, waiting up to `wait`; false when none came.
  bool next(JobEvent& ev, std::chrono::milliseconds wait);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // The tokens the answer holds (up to an end-of-text token or a stop string), once done.
  int64_t completion_tokens() const { return completion_tokens_; }

 private:
  void push(JobEvent ev);
  void finish(const std::string& reason);

  PreparedGeneration g_;
  const io::Tokenizer& tok_;
  int64_t id_ = 0;
  std::chrono::steady_clock::time_point admitted_ = std::chrono::steady_clock::now();
  std::string sent_;
  int64_t scanned_ = 0;        // generated tokens checked for an end-of-text token
  int64_t end_ = -1;           // the answer's end (index into the generated tokens) once known
  int64_t completion_tokens_ = 0;
  size_t cache_bytes_ = 0;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
};

}  // namespace mosaic::serve
