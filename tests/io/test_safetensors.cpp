// The safetensors loader against pip's safetensors (tests/io/make_safetensors.py) as oracle,
// and against hand-made corrupt files: every bad header must give a mosaic::Error that names
// the file, never a crash or an out-of-bounds pointer.
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <random>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace mosaic::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::read_file;
using test::run_python;
using test::scratch_dir;
using test::write_file;

json make_with_python(const std::string& mode, const fs::path& dir) {
  std::string out = run_python("tests/io/make_safetensors.py", mode + " \"" + dir.string() + "\"");
  return json::parse(out);
}

// A safetensors file from a header text and raw data, exactly as given (no validation).
std::string st_bytes(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Runs `f` and checks it throws mosaic::Error whose message has every word in `words`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> words) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << *words.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& w : words) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
  }
}

// Writes `bytes` as a file and expects opening it to fail with the file name and `words`.
void expect_bad_file(const std::string& bytes, std::initializer_list<std::string> words,
                     const std::string& name) {
  const fs::path p = scratch_dir("st_bad_" + name) / (name + ".safetensors");
  write_file(p, bytes);
  expect_error([&] { SafetensorsFile::open(p.string()); }, {p.string()});
  expect_error([&] { SafetensorsFile::open(p.string()); }, words);
}

// Compares one loaded tensor with the oracle's description of it.
void expect_matches(const TensorInfo& t, const json& want, const fs::path& dir) {
  SCOPED_TRACE(t.name);
  EXPECT_EQ(dtype_name(t.dtype), want["dtype"].get<std::string>());
  EXPECT_EQ(t.shape, want["shape"].get<std::vector<int64_t>>());
  EXPECT_EQ(fs::path(t.file), dir / want["file"].get<std::string>());
  const json& vals = want["values"];
  ASSERT_EQ(t.numel(), static_cast<int64_t>(vals.size()));
  ASSERT_EQ(t.nbytes, vals.size() * dtype_size(t.dtype));
  if (vals.empty()) return;  // memcpy-based decoders must not see a null, empty buffer
  if (t.dtype == DType::I64) {
    std::vector<int64_t> got(vals.size());
    std::memcpy(got.data(), t.data, t.nbytes);
    EXPECT_EQ(got, vals.get<std::vector<int64_t>>());
    return;
  }
  std::vector<float> got(vals.size());
  to_f32(t.dtype, t.data, got.data(), got.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], static_cast<float>(vals[i].get<double>())) << "element " << i;
}

TEST(Safetensors, SingleFileMatchesPythonOracle) {
  const fs::path dir = scratch_dir("st_single");
  const json want = make_with_python("single", dir);
  const SafetensorsFile f = SafetensorsFile::open((dir / "model.safetensors").string());
  ASSERT_EQ(f.tensors().size(), want["tensors"].size());
  for (const TensorInfo& t : f.tensors()) {
    ASSERT_TRUE(want["tensors"].contains(t.name)) << t.name;
    expect_matches(t, want["tensors"][t.name], dir);
    EXPECT_EQ(f.find(t.name), &t);
  }
  EXPECT_EQ(f.find("model.nope"), nullptr);
  EXPECT_EQ(f.metadata(), (want["metadata"].get<std::map<std::string, std::string>>()));
  EXPECT_TRUE(std::is_sorted(f.tensors().begin(), f.tensors().end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
}

TEST(Safetensors, WrittenFilesReadBackHereAndInTheOracle) {
  const fs::path p = scratch_dir("st_write") / "hidden.safetensors";
  std::vector<float> v(15);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * static_cast<float>(i) - 3.0f;
  write_safetensors(p.string(), "hidden", DType::F32, {3, 5}, v.data(), v.size() * 4);
  const json got = json::parse(run_python("tests/io/make_safetensors.py", "read \"" + p.string() + "\""));
  ASSERT_TRUE(got.contains("hidden"));
  EXPECT_EQ(got["hidden"]["dtype"], "float32");
  EXPECT_EQ(got["hidden"]["shape"].get<std::vector<int64_t>>(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(got["hidden"]["values"].get<std::vector<float>>(), v);
  const SafetensorsFile f = SafetensorsFile::open(p.string());
  const TensorInfo* t = f.find("hidden");
  ASSERT_NE(t, nullptr);
  std::vector<float> back(15);
  to_f32(t->dtype, t->data, back.data(), back.size());
  EXPECT_EQ(back, v);
  expect_error([&] { write_safetensors((p / "no_such_dir" / "x.safetensors").string(), "h", DType::F32, {1}, v.data(), 4); },
               {"no_such_dir"});
}

TEST(Safetensors, MoveKeepsTensorPointersValid) {
  const fs::path dir = scratch_dir("st_move");
  const json want = make_with_python("single", dir);
  SafetensorsFile a = SafetensorsFile::open((dir / "model.safetensors").string());
  const TensorInfo* q = a.find("model.layers.0.attn.q.weight");
  ASSERT_NE(q, nullptr);
  SafetensorsFile b = std::move(a);
  EXPECT_EQ(b.find("model.layers.0.attn.q.weight"), q);
  expect_matches(*q, want["tensors"]["model.layers.0.attn.q.weight"], dir);
}

TEST(Safetensors, EmptyHeaderAndZeroSizeTensorsAreLegal) {
  const fs::path dir = scratch_dir("st_zero");
  write_file(dir / "a.safetensors", st_bytes("{}"));
  EXPECT_TRUE(SafetensorsFile::open((dir / "a.safetensors").string()).tensors().empty());
  write_file(dir / "b.safetensors",
             st_bytes(R"({"e":{"dtype":"BF16","shape":[4,0],"data_offsets":[0,0]},)"
                      R"("x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                      "ab"));
  const SafetensorsFile f = SafetensorsFile::open((dir / "b.safetensors").string());
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find("e")->numel(), 0);
  EXPECT_EQ(f.find("e")->nbytes, 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.find("x")->data), 2), "ab");
}

TEST(Safetensors, BadFilesNameFileAndCause) {
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";
  expect_bad_file("abc", {"too short"}, "short");
  expect_bad_file(st_bytes("{}").substr(0, 8) + "{", {"larger than the file"}, "hdr_len");
  // Header lengths past the 100 MB limit: 200 MB, 10 GB, 2^63 (issue 16's cases).
  for (const uint64_t huge : {uint64_t{200'000'000}, uint64_t{10'000'000'000}, uint64_t{1} << 63}) {
    std::string b = st_bytes("{}");
    std::memcpy(b.data(), &huge, 8);
    expect_bad_file(b, {"absurd"}, "absurd");
  }
  expect_bad_file(st_bytes("{\"a\":"), {"not valid JSON"}, "json");
  expect_bad_file(st_bytes("[1,2]"), {"JSON object"}, "array");
  expect_bad_file(st_bytes(std::string(100, '[') + std::string(100, ']')), {"nests deeper"}, "deep");
  expect_bad_file(st_bytes(R"({"a":[1]})"), {"'a'", "must be an object"}, "entry_type");
  expect_bad_file(st_bytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                  {"'a'", "missing 'dtype'"}, "no_dtype");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "xxxx"),
                  {"'a'", "missing 'shape'"}, "no_shape");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx"),
                  {"'a'", "missing 'data_offsets'"}, "no_offsets");
  expect_bad_file(st_bytes(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                  {"'a'", "dtype must be a string"}, "dtype_type");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"),
                  {"'a'", "unknown dtype", "F8_E4M3"}, "dtype_unknown");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", "xxxxxxxx"),
                  {"'a'", "shape must be an array"}, "shape_type");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", "xxxxxxxx"),
                  {"'a'", "must be an integer"}, "shape_float");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "xxxxxxxx"),
                  {"'a'", "negative"}, "shape_neg");
  expect_bad_file(
      st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})"),
      {"'a'", "64 bits"}, "numel_overflow");
  expect_bad_file(
      st_bytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})"),
      {"'a'", "too large in bytes"}, "bytes_overflow");
  // Size fields of 2^63: a shape dim, a data offset.
  expect_bad_file(st_bytes(R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})"),
                  {"'a'", "shape dim 9223372036854775808 is too large"}, "dim_2_63");
  expect_bad_file(st_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,9223372036854775808]}})", "xxxxxxxx"),
                  {"'a'", "truncated", "9223372036854775808"}, "offset_2_63");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":[0]}})"),
                  {"'a'", "[begin, end]"}, "offsets_arity");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":{"b":0}}})"),
                  {"'a'", "[begin, end]"}, "offsets_type");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":[8,0]}})", "xxxxxxxx"),
                  {"'a'", "begin > end"}, "offsets_order");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]}})", "xxxxx"),
                  {"'a'", "truncated: file has 5 bytes of data, tensor needs up to 8"}, "truncated");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":[0,6]}})", "xxxxxxxx"),
                  {"'a'", "dtype/shape disagree"}, "size_mismatch");
  expect_bad_file(st_bytes("{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                               R"(,"data_offsets":[4,12]}})",
                           std::string(12, 'x')),
                  {"'a'", "'b'", "overlap"}, "overlap");
  expect_bad_file(st_bytes(R"({"__metadata__":{"k":1}})"), {"__metadata__", "'k'"}, "meta_type");
  expect_bad_file(st_bytes(R"({"__metadata__":[]})"), {"__metadata__"}, "meta_array");
}

TEST(Safetensors, MissingFileAndDirectoryAreErrors) {
  const fs::path dir = scratch_dir("st_missing");
  const std::string p = (dir / "nope.safetensors").string();
  expect_error([&] { SafetensorsFile::open(p); }, {p, "cannot open"});
  expect_error([&] { SafetensorsFile::open(dir.string()); }, {dir.string(), "not a regular file"});
}

// Random byte flips and truncations of a valid file: each must load or throw mosaic::Error.
TEST(Safetensors, FuzzedFilesLoadOrThrowNeverCrash) {
  const std::string good =
      st_bytes(R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
               R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
               R"("c":{"dtype":"I64","shape":[0],"data_offsets":[22,22]}})",
               std::string(22, '\x3f'));
  const fs::path p = scratch_dir("st_fuzz") / "f.safetensors";
  std::mt19937 rng(1234);
  int loaded = 0, rejected = 0;
  for (int it = 0; it < 600; ++it) {
    std::string b = good;
    const int kind = it % 3;
    if (kind == 0) {
      b.resize(rng() % b.size());
    } else {
      // Flip a few bytes anywhere, or only in the length prefix, whose damage is the subtlest.
      const size_t span = kind == 1 ? b.size() : 8;
      for (int k = 0, n = 1 + rng() % 3; k < n; ++k) b[rng() % span] ^= static_cast<char>(1 + rng() % 255);
    }
    write_file(p, b);
    try {
      const SafetensorsFile f = SafetensorsFile::open(p.string());
      uint64_t sum = 0;  // touch every byte we were handed: must stay inside the mapping
      for (const TensorInfo& t : f.tensors())
        for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<uint8_t>(t.data[i]);
      (void)sum;
      ++loaded;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);
}

TEST(Checkpoint, SingleFile) {
  const fs::path dir = scratch_dir("ck_single");
  const json want = make_with_python("single", dir);
  const Checkpoint ck = Checkpoint::open(dir.string());
  std::vector<std::string> names;
  size_t bytes = 0;
  for (const auto& [name, t] : want["tensors"].items()) {
    names.push_back(name);
    bytes += t["values"].size() * dtype_size(ck.get(name).dtype);
    expect_matches(ck.get(name), t, dir);
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(ck.names(), names);
  EXPECT_EQ(ck.total_bytes(), bytes);
  EXPECT_EQ(ck.dir(), dir.string());
  EXPECT_EQ(ck.files().size(), 1u);
}

TEST(Checkpoint, GetChecksNameAndShape) {
  const fs::path dir = scratch_dir("ck_get");
  make_with_python("single", dir);
  const Checkpoint ck = Checkpoint::open(dir.string());
  const std::vector<int64_t> good{3, 4}, bad{4, 3};
  EXPECT_EQ(ck.get("model.layers.0.attn.q.weight", &good).shape, good);
  expect_error([&] { ck.get("model.layers.0.attn.q.weight", &bad); },
               {"model.layers.0.attn.q.weight", "[3, 4]", "expected [4, 3]",
                (dir / "model.safetensors").string()});
  expect_error([&] { ck.get("lm_head.weight"); }, {"lm_head.weight", "not found", dir.string()});
  EXPECT_EQ(ck.find("lm_head.weight"), nullptr);
}

TEST(Checkpoint, ShardedIndex) {
  const fs::path dir = scratch_dir("ck_sharded");
  const json want = make_with_python("sharded", dir);
  // Moving the checkpoint must keep the name table's pointers valid.
  Checkpoint moved = Checkpoint::open(dir.string());
  const Checkpoint ck = std::move(moved);
  EXPECT_EQ(ck.files().size(), 2u);
  EXPECT_EQ(ck.names().size(), want["tensors"].size());
  for (const auto& [name, t] : want["tensors"].items()) expect_matches(ck.get(name), t, dir);
}

TEST(Checkpoint, FallsBackToAllSafetensorsFiles) {
  const fs::path dir = scratch_dir("ck_glob");
  const json want = make_with_python("sharded", dir);
  fs::remove(dir / "model.safetensors.index.json");
  const Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_EQ(ck.files().size(), 2u);
  for (const auto& [name, t] : want["tensors"].items()) expect_matches(ck.get(name), t, dir);
}

TEST(Checkpoint, IndexErrors) {
  const fs::path dir = scratch_dir("ck_index_err");
  make_with_python("sharded", dir);
  const fs::path index = dir / "model.safetensors.index.json";
  const json good = json::parse(read_file(index));
  auto with_map = [&](const std::string& name, const json& shard) {
    json j = good;
    j["weight_map"][name] = shard;
    write_file(index, j.dump());
  };
  auto open = [&] { Checkpoint::open(dir.string()); };

  with_map("model.extra", "model-00003-of-00002.safetensors");
  expect_error(open, {index.string(), "model-00003-of-00002.safetensors", "missing"});
  with_map("model.extra", "model-00001-of-00002.safetensors");
  expect_error(open, {index.string(), "model.extra", "no such tensor"});
  // A name listed under the other shard than the one holding it.
  with_map("model.ids", "model-00002-of-00002.safetensors");
  expect_error(open, {index.string(), "model.ids", "no such tensor"});
  with_map("model.extra", "../model-00001-of-00002.safetensors");
  expect_error(open, {index.string(), "plain file name"});
  with_map("model.extra", "..");
  expect_error(open, {index.string(), "plain file name"});
  with_map("model.extra", 3);
  expect_error(open, {index.string(), "model.extra"});
  write_file(index, R"({"metadata":{}})");
  expect_error(open, {index.string(), "weight_map"});
  write_file(index, "{not json");
  expect_error(open, {index.string(), "not valid JSON"});
  write_file(index, good.dump());
  EXPECT_NO_THROW(open());
}

TEST(Checkpoint, DuplicateNamesAcrossFiles) {
  const fs::path dir = scratch_dir("ck_dup");
  const std::string one = st_bytes(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x");
  write_file(dir / "a.safetensors", one);
  write_file(dir / "b.safetensors", one);
  expect_error([&] { Checkpoint::open(dir.string()); },
               {"'w'", (dir / "a.safetensors").string(), (dir / "b.safetensors").string()});
}

TEST(Checkpoint, MissingOrEmptyDirectory) {
  const fs::path dir = scratch_dir("ck_empty");
  expect_error([&] { Checkpoint::open(dir.string()); }, {dir.string(), "no model.safetensors"});
  expect_error([&] { Checkpoint::open((dir / "nope").string()); }, {"nope", "not a directory"});
  // A corrupt shard reports the shard's own path, not just the directory.
  write_file(dir / "model.safetensors", "short");
  expect_error([&] { Checkpoint::open(dir.string()); },
               {(dir / "model.safetensors").string(), "too short"});
}

}  // namespace
}  // namespace mosaic::io
