#include "serve/generation_job.h"

#include <algorithm>

namespace mosaic::serve {

namespace {

// U+FFFD, which decode writes for bytes that do not form UTF-8 yet: a character whose bytes
// span two tokens is held back until its last token is final.
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

}  // namespace

GenerationJob::GenerationJob(PreparedGeneration g, const io::Tokenizer& tok) : g_(std::move(g)), tok_(tok) {}

bool GenerationJob::after_step() {
  const Sequence& s = g_.sequence;
  const int64_t P = s.prompt_length, n = std::min<int64_t>(g_.max_tokens, s.length() - P);
  int64_t final_end = n;  // generated tokens [0, final_end) are committed
  for (int64_t i = 0; i < n; ++i)
    if (s.tokens[P + i] == s.mask_id) {
      final_end = i;
      break;
    }
  for (; scanned_ < final_end && end_ < 0; ++scanned_)
    if (std::find(g_.end_ids.begin(), g_.end_ids.end(), s.tokens[P + scanned_]) != g_.end_ids.end()) end_ = scanned_;
  const int64_t upto = end_ >= 0 ? end_ : final_end;
  const bool ended = end_ >= 0 || s.finished || final_end == n;
  std::string text = tok_.decode(std::vector<int32_t>(s.tokens.begin() + P, s.tokens.begin() + P + upto), true);
  completion_tokens_ = upto;
  // The earliest stop string ends the text; one may still be forming at the end of the final text.
  size_t cut = std::string::npos;
  for (const std::string& st : g_.stop) cut = std::min(cut, text.find(st));
  std::string reason = end_ >= 0 ? "stop" : "length";
  if (cut != std::string::npos) {
    text.resize(cut);
    reason = "stop";
    // The tokens the kept text takes: the shortest prefix whose text covers it.
    int64_t lo = 0, hi = upto;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      const std::string t = tok_.decode(std::vector<int32_t>(s.tokens.begin() + P, s.tokens.begin() + P + mid), true);
      if (t.size() >= cut) hi = mid; else lo = mid + 1;
    }
    completion_tokens_ = lo;
  }
  const bool finished = ended || cut != std::string::npos;
  if (!finished) {
    while (text.size() >= kReplacement.size() && text.compare(text.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0)
      text.resize(text.size() - kReplacement.size());
    // A stop string may be forming: hold back the longest tail that begins one.
    size_t hold = 0;
    for (const std::string& st : g_.stop)
      for (size_t k = std::min(st.size() - 1, text.size()); k > hold; --k)
        if (text.compare(text.size() - k, k, st, 0, k) == 0) {
          hold = k;
          break;
        }
    text.resize(text.size() - hold);
  }
  if (text.size() > sent_.size() && text.compare(0, sent_.size(), sent_) == 0) {
    JobEvent ev;
    ev.text = text.substr(sent_.size());
    sent_ = text;
    push(std::move(ev));
  }
  if (finished) finish(reason);
  return finished;
}

void GenerationJob::finish(const std::string& reason) {
  JobEvent ev;
  ev.kind = JobEvent::Kind::Done;
  ev.finish_reason = reason;
  ev.prompt_tokens = static_cast<int64_t>(g_.prompt.size());
  ev.completion_tokens = completion_tokens_;
  done_ = true;
  push(std::move(ev));
}

void GenerationJob::fail(const ApiError& e) {
  JobEvent ev;
  ev.kind = JobEvent::Kind::Error;
  ev.status = e.status();
  ev.error = e.body();
  done_ = true;
  push(std::move(ev));
}

void GenerationJob::push(JobEvent ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

bool GenerationJob::next(JobEvent& ev, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, wait, [&] { return !events_.empty(); })) return false;
  ev = std::move(events_.front());
  events_.pop_front();
  return true;
}

}  // namespace mosaic::serve
