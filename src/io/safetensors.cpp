#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <utility>

#include "core/error.h"

namespace mosaic::io {

namespace {

using json = nlohmann::json;

// The length prefix and all tensor data are little-endian; we hand out raw pointers.
static_assert(std::endian::native == std::endian::little, "safetensors loader assumes little-endian");

// A valid header is at most 3 levels deep (root -> entry -> shape); the limit only exists so
// that a hostile "[[[[..." cannot cost more than a quick rejection.
constexpr int kMaxJsonDepth = 8;

// Untrusted values go into messages; keep them readable when they are huge.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

uint64_t nonneg_int(const json& v, std::string_view what, const std::string& where) {
  MOSAIC_CHECK(v.is_number_integer(), "{}: {} must be an integer, got {}", where, what, brief(v));
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  const int64_t x = v.get<int64_t>();
  MOSAIC_CHECK(x >= 0, "{}: {} is negative ({})", where, what, x);
  return static_cast<uint64_t>(x);
}

const json& field(const json& entry, const char* key, const std::string& where) {
  auto it = entry.find(key);
  MOSAIC_CHECK(it != entry.end(), "{}: missing '{}'", where, key);
  return *it;
}

std::map<std::string, std::string> parse_metadata(const json& m, const std::string& path) {
  MOSAIC_CHECK(m.is_object(), "{}: __metadata__ must be an object of strings, got {}", path,
               brief(m));
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : m.items()) {
    MOSAIC_CHECK(v.is_string(), "{}: __metadata__ value '{}' must be a string, got {}", path, k,
                 brief(v));
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

struct Span {
  uint64_t begin, end;
};

// Validates one header entry against the data section; returns its byte range in that section.
Span parse_entry(const std::string& name, const json& e, uint64_t data_size, TensorInfo& t,
                 const std::string& path) {
  const std::string where = fmt::format("{}: tensor '{}'", path, name);
  MOSAIC_CHECK(e.is_object(), "{}: entry must be an object, got {}", where, brief(e));

  const json& dt = field(e, "dtype", where);
  MOSAIC_CHECK(dt.is_string(), "{}: dtype must be a string, got {}", where, brief(dt));
  MOSAIC_CHECK(parse_dtype(dt.get<std::string>(), &t.dtype), "{}: unknown dtype {}", where,
               brief(dt));

  const json& shape = field(e, "shape", where);
  MOSAIC_CHECK(shape.is_array(), "{}: shape must be an array, got {}", where, brief(shape));
  int64_t numel = 1;
  for (const json& d : shape) {
    const uint64_t dim = nonneg_int(d, "shape dim", where);
    MOSAIC_CHECK(dim <= static_cast<uint64_t>(INT64_MAX), "{}: shape dim {} is too large", where,
                 dim);
    MOSAIC_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel),
                 "{}: shape {} has more elements than fit in 64 bits", where, brief(shape));
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes = 0;
  MOSAIC_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(t.dtype), &nbytes),
               "{}: shape {} of {} is too large in bytes", where, brief(shape), dtype_name(t.dtype));

  const json& off = field(e, "data_offsets", where);
  MOSAIC_CHECK(off.is_array() && off.size() == 2, "{}: data_offsets must be [begin, end], got {}",
               where, brief(off));
  const Span s{nonneg_int(off[0], "data_offsets begin", where),
               nonneg_int(off[1], "data_offsets end", where)};
  MOSAIC_CHECK(s.begin <= s.end, "{}: data_offsets [{}, {}] has begin > end", where, s.begin,
               s.end);
  MOSAIC_CHECK(s.end <= data_size, "{}: truncated: file has {} bytes of data, tensor needs up to {}",
               where, data_size, s.end);
  MOSAIC_CHECK(s.end - s.begin == nbytes,
               "{}: dtype/shape disagree with data_offsets: {} {} needs {} bytes, data_offsets "
               "[{}, {}] hold {}",
               where, dtype_name(t.dtype), brief(shape), nbytes, s.begin, s.end, s.end - s.begin);
  t.name = name;
  t.nbytes = static_cast<size_t>(nbytes);
  t.file = path;
  return s;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MOSAIC_CHECK(fd >= 0, "{}: cannot open safetensors file: {}", path, std::strerror(errno));
  struct stat st {};
  std::string err;
  if (::fstat(fd, &st) != 0)
    err = fmt::format("cannot stat: {}", std::strerror(errno));
  else if (!S_ISREG(st.st_mode))
    err = "not a regular file";
  else if (st.st_size < 8)
    err = fmt::format("file is {} bytes, too short for the 8-byte header length", st.st_size);
  if (err.empty()) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
      err = fmt::format("cannot mmap: {}", std::strerror(errno));
    else
      f.map_ = p, f.map_size_ = static_cast<size_t>(st.st_size);
  }
  ::close(fd);  // the mapping keeps the file alive
  MOSAIC_CHECK(err.empty(), "{}: {}", path, err);

  const auto* base = static_cast<const std::byte*>(f.map_);
  uint64_t n = 0;
  std::memcpy(&n, base, 8);
  MOSAIC_CHECK(n <= kMaxSafetensorsHeader,
               "{}: header length {} is absurd (> {} bytes): not a safetensors file?", path, n,
               kMaxSafetensorsHeader);
  MOSAIC_CHECK(n <= f.map_size_ - 8, "{}: header length {} is larger than the file ({} bytes)",
               path, n, f.map_size_);
  const uint64_t data_size = f.map_size_ - 8 - n;
  const std::byte* data = base + 8 + n;  // per the spec; the writer pads the header to align it

  json h;
  try {
    const auto* hb = reinterpret_cast<const char*>(base + 8);
    h = json::parse(hb, hb + n, [&](int depth, json::parse_event_t, json&) {
      MOSAIC_CHECK(depth <= kMaxJsonDepth, "{}: header JSON nests deeper than {}", path,
                   kMaxJsonDepth);
      return true;
    });
  } catch (const json::exception& e) {
    MOSAIC_FAIL("{}: header is not valid JSON: {}", path, e.what());
  }
  MOSAIC_CHECK(h.is_object(), "{}: header must be a JSON object, got {}", path, brief(h));

  std::vector<Span> spans;
  try {
    for (const auto& [name, entry] : h.items()) {  // nlohmann objects iterate sorted by key
      if (name == "__metadata__") {
        f.metadata_ = parse_metadata(entry, path);
        continue;
      }
      TensorInfo t;
      spans.push_back(parse_entry(name, entry, data_size, t, path));
      t.data = data + spans.back().begin;
      f.tensors_.push_back(std::move(t));
    }
  } catch (const json::exception& e) {  // the checks above should make this unreachable
    MOSAIC_FAIL("{}: malformed header: {}", path, e.what());
  }

  // Two tensors sharing bytes would alias silently; empty tensors own no bytes and cannot.
  std::vector<size_t> order;
  for (size_t i = 0; i < spans.size(); ++i)
    if (spans[i].end > spans[i].begin) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(spans[a].begin, spans[a].end) < std::tie(spans[b].begin, spans[b].end);
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const Span &a = spans[order[k - 1]], &b = spans[order[k]];
    MOSAIC_CHECK(a.end <= b.begin,
                 "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data section", path,
                 f.tensors_[order[k - 1]].name, a.begin, a.end, f.tensors_[order[k]].name,
                 b.begin, b.end);
  }
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

void write_safetensors(const std::string& path, const std::string& name, DType dtype,
                       const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  nlohmann::json h;
  h[name] = {{"dtype", std::string(dtype_name(dtype))}, {"shape", shape}, {"data_offsets", {0, nbytes}}};
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts 8-aligned
  std::ofstream out(path, std::ios::binary);
  MOSAIC_CHECK(out.good(), "cannot write '{}'", path);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  out.close();
  MOSAIC_CHECK(out.good(), "writing '{}' failed ({} B of tensor data; is the disk full?)", path, nbytes);
}

}  // namespace mosaic::io
