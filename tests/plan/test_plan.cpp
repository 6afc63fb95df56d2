// Invariants of the global reuse plan and the chunk search, on random graphs and on the
// real model graphs at LLaDA-8B and Dream-7B scale.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>

#include "core/error.h"
#include "io/model_config.h"
#include "models/family.h"
#include "models/blocks.h"
#include "plan/memory_plan.h"
#include "test_util.h"

namespace mosaic {
namespace {

// No two tensors alive at the same node may share a byte, and the arena holds them all.
void expect_valid_placement(const std::vector<Lifetime>& life, const Placement& p) {
  for (size_t a = 0; a < life.size(); ++a) {
    if (!life[a].planned() || life[a].bytes == 0) continue;
    ASSERT_LE(p.offset[a] + life[a].bytes, p.arena_bytes) << "tensor " << a;
    ASSERT_EQ(p.offset[a] % kTensorAlignment, 0u);
    for (size_t b = a + 1; b < life.size(); ++b) {
      if (!life[b].planned() || life[b].bytes == 0) continue;
      bool time = life[a].first <= life[b].last && life[b].first <= life[a].last;
      bool space = p.offset[a] < p.offset[b] + life[b].bytes && p.offset[b] < p.offset[a] + life[a].bytes;
      ASSERT_FALSE(time && space) << "tensors " << a << " and " << b << " overlap";
    }
  }
}

TEST(PlanOffsets, RandomLifetimesNeverOverlapAndArenaCoversPeak) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    int n_nodes = 1 + static_cast<int>(rng() % 60);
    std::vector<Lifetime> life(1 + rng() % 80);
    for (auto& l : life) {
      int a = static_cast<int>(rng() % n_nodes), b = static_cast<int>(rng() % n_nodes);
      l.first = std::min(a, b);
      l.last = std::max(a, b);
      l.bytes = (rng() % 4 == 0) ? 0 : 1 + rng() % 100000;
    }
    Placement p = plan_offsets(life);
    expect_valid_placement(life, p);
    auto live = live_bytes_per_node(life, n_nodes);
    size_t peak = *std::max_element(live.begin(), live.end());
    EXPECT_GE(p.arena_bytes, peak);
  }
}

TEST(PlanOffsets, DisjointLifetimesShareMemory) {
  // A chain a->b->c where each dies as the next is born needs only two slots.
  std::vector<Lifetime> life = {{0, 1, 1000}, {1, 2, 1000}, {2, 3, 1000}, {3, 4, 1000}};
  Placement p = plan_offsets(life);
  expect_valid_placement(life, p);
  EXPECT_EQ(p.arena_bytes, 2 * align_up(1000, kTensorAlignment));
}

// A random layered graph: regions of L or M rows with locals and full tensors, some used
// whole, written and read in order.
Graph random_graph(std::mt19937& rng) {
  Graph g;
  const SymDim L = SymDim::tokens(), M = SymDim::masked();
  int ids = g.add_tensor({"tokens", TensorKind::Input, ElemType::I32, L, SymDim::constant(1)});
  std::vector<int> full_L = {ids};
  int n_regions = 1 + static_cast<int>(rng() % 8);
  for (int r = 0; r < n_regions; ++r) {
    bool on_m = rng() % 4 == 0;
    SymDim rows = on_m ? M : L;
    int reg = g.begin_region({"r" + std::to_string(r), rows, rng() % 5 != 0});
    std::vector<int> locals;
    int n_nodes = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; i < n_nodes; ++i) {
      Node n{Op::SwiGlu, {}, {}};
      int out;
      if (rng() % 2 == 0 || on_m) {
        out = g.add_tensor({"l", TensorKind::Activation, ElemType::Act, rows,
                            SymDim::constant(1 + static_cast<int64_t>(rng() % 64)), reg});
        locals.push_back(out);
      } else {
        out = g.add_tensor({"f", TensorKind::Activation, ElemType::Act, L,
                            SymDim::constant(1 + static_cast<int64_t>(rng() % 64))});
        full_L.push_back(out);
      }
      // Read something already defined: an earlier local of this region, or a full tensor.
      std::vector<int> earlier(locals.begin(), locals.end());
      if (!earlier.empty() && earlier.back() == out) earlier.pop_back();
      if (!earlier.empty() && rng() % 2 == 0) n.in.push_back({earlier[rng() % earlier.size()]});
      int src = full_L[rng() % full_L.size()];
      if (src != out) n.in.push_back({src, on_m || rng() % 3 == 0});
      n.out.push_back({out});
      g.add_node(n);
    }
    g.end_region();
  }
  g.validate();
  return g;
}

TEST(MemoryPlan, RandomGraphsAndDimsKeepInvariants) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 150; ++trial) {
    Graph g = random_graph(rng);
    Dims d{1 + static_cast<int64_t>(rng() % 5000), 0};
    d.M = static_cast<int64_t>(rng() % (d.L + 1));
    std::vector<int> chunks(g.regions.size());
    for (size_t r = 0; r < chunks.size(); ++r) chunks[r] = g.regions[r].chunkable ? 1 + static_cast<int>(rng() % 7) : 1;
    MemoryPlan p = make_plan(g, d, chunks, 2);
    expect_valid_placement(p.life, p.placement);
    EXPECT_GE(p.arena_bytes(), p.peak_live);
    // A full tensor touched by a chunked region stays alive across the whole region.
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const Region& r = g.regions[g.nodes[i].region];
      if (chunks[g.nodes[i].region] <= 1) continue;
      for (const auto& o : g.nodes[i].in)
        if (g.tensors[o.tensor].region < 0) {
          EXPECT_LE(p.life[o.tensor].first, r.first);
          EXPECT_GE(p.life[o.tensor].last, r.last);
        }
    }
  }
}

io::ModelConfig llada8b() {
  return parse_model_config(nlohmann::json::parse(R"({"model_type":"llada","d_model":4096,"n_layers":32,
    "n_heads":32,"n_kv_heads":32,"mlp_hidden_size":12288,"vocab_size":126464,"embedding_size":126464,
    "rope_theta":500000.0,"rms_norm_eps":1e-5,"mask_token_id":126336,"max_sequence_length":4096})"),
                                "llada-8b");
}

io::ModelConfig dream7b() {
  return parse_model_config(nlohmann::json::parse(R"({"model_type":"Dream","hidden_size":3584,
    "num_hidden_layers":28,"num_attention_heads":28,"num_key_value_heads":4,"intermediate_size":18944,
    "vocab_size":152064,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"mask_token_id":151666})"),
                                "dream-7b");
}

// LLaDA2.0-mini's config as shipped in configs/ (MoE layers, block-causal attention).
io::ModelConfig llada2_mini() {
  return parse_model_config(
      nlohmann::json::parse(test::read_file(test::source_dir() / "configs" / "llada2-mini" / "config.json")),
      "llada2-mini");
}

TEST(ChunkSearch, NeverExceedsTheBudgetItWasGiven) {
  for (const auto& cfg : {llada8b(), dream7b(), llada2_mini()}) {
    GraphOptions o;
    o.traits = cuda_traits();
    if (cfg.moe.experts > 0) o.attention_block = 32;
    Graph g = build_step_graph(cfg, o);
    for (int64_t L : {4096, 65536, 262144}) {
      Dims d{L, 32};
      MemoryPlan unchunked = make_plan(g, d, std::vector<int>(g.regions.size(), 1), 2);
      for (double frac : {1.0, 0.7, 0.5, 0.3}) {
        size_t budget = static_cast<size_t>(static_cast<double>(unchunked.arena_bytes()) * frac);
        auto p = try_plan_for_budget(g, d, 2, budget);
        if (frac == 1.0) ASSERT_TRUE(p.has_value());
        if (!p) continue;
        EXPECT_LE(p->arena_bytes(), budget) << cfg.source << " L=" << L << " frac=" << frac;
        expect_valid_placement(p->life, p->placement);
        // A plan that fits unchunked chunks only where chunks stay large (peak taming).
        if (frac == 1.0)
          for (size_t r = 0; r < p->chunks.size(); ++r)
            if (p->chunks[r] > 1) EXPECT_GE(g.chunk_rows(static_cast<int>(r), d, p->chunk_rows[r]), kTameMinRows);
      }
    }
  }
}

// A MoE region's expert scratch is planned at the bound: every row of a chunk may send all its
// top-k pairs anywhere, so the scratch grows with the chunk's rows, never with the routing.
TEST(ChunkSearch, MoeScratchIsPlannedAtTheBound) {
  const io::ModelConfig cfg = llada2_mini();
  GraphOptions o;
  o.traits = cuda_traits();
  o.attention_block = 32;
  Graph g = build_step_graph(cfg, o);
  int found = 0;
  for (const TensorDesc& t : g.tensors) {
    if (t.name.find("moe.workspace") == std::string::npos) continue;
    ++found;
    EXPECT_EQ(t.cols.eval(Dims{4096, 32}), moe_workspace_floats(cfg));
    const int64_t rows = t.rows.eval(Dims{4096, 32});
    EXPECT_TRUE(rows == 4096 || rows == 32) << t.name;  // the last layer runs only the head's rows
  }
  EXPECT_EQ(found, 19);  // every layer but the dense first one
  // The grouped form's parts fit the scratch of any number of rows.
  for (int64_t rows : {1, 7, 4096})
    EXPECT_LE(static_cast<double>(rows) * cfg.moe.experts_per_token * (cfg.d_model + cfg.moe.ffn_hidden) * 2 +
                  2.0 * rows * cfg.moe.experts_per_token * 4 + 3 * 256,
              static_cast<double>(rows) * moe_workspace_floats(cfg) * 4);
}

TEST(ChunkSearch, BudgetTooSmallGivesTheClearErrorWithLargestFit) {
  GraphOptions o;
  o.traits = cuda_traits();
  Graph g = build_step_graph(llada8b(), o);
  const size_t budget = size_t{4} << 30;
  try {
    plan_for_budget(g, Dims{1 << 22, 32}, 2, budget);
    FAIL() << "expected OutOfBudget";
  } catch (const OutOfBudget& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("largest L that fits is"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--memory-budget"), std::string::npos) << msg;
  }
  int64_t fit = max_tokens_that_fit(g, 32, 2, budget);
  ASSERT_GT(fit, 32);
  EXPECT_TRUE(try_plan_for_budget(g, Dims{fit, 32}, 2, budget).has_value());
  EXPECT_FALSE(try_plan_for_budget(g, Dims{fit + 1, 32}, 2, budget).has_value());
}

TEST(ChunkSearch, MillionTokenLladaStepFitsAnH100) {
  // 80 GB card: weights (bf16) and 1 GiB of library working memory leave the rest.
  GraphOptions o;
  o.traits = cuda_traits();
  auto cfg = llada8b();
  Graph g = build_step_graph(cfg, o);
  const size_t card = size_t{79} << 30;
  const size_t budget = card - static_cast<size_t>(cfg.n_params()) * 2 - (size_t{1} << 30);
  auto p = try_plan_for_budget(g, Dims{1000000, 32}, 2, budget);
  ASSERT_TRUE(p.has_value());
  EXPECT_LE(p->arena_bytes(), budget);
}

TEST(ChunkSearch, ShortStepsPayNothing) {
  // Below twice the floor no region can be halved: a short step runs unchunked.
  GraphOptions o;
  o.traits = cuda_traits();
  Graph g = build_step_graph(llada8b(), o);
  auto p = try_plan_for_budget(g, Dims{2 * kTameMinRows - 1, 32}, 2, SIZE_MAX);
  ASSERT_TRUE(p.has_value());
  for (int c : p->chunks) EXPECT_EQ(c, 1);
}

TEST(ChunkSearch, TamedStepsMeetThePeakToAverageTarget) {
  // The issue's target (<= 1.15) where the default floor reaches it. Not pinned here, and
  // reported in docs/PERFORMANCE.md: 4k for both models (1.29 / 1.55) and Dream-7B at 16k
  // (1.1501: its FFN chunks sit at the floor and hold the peak).
  const std::vector<std::pair<io::ModelConfig, int64_t>> cases = {
      {llada8b(), 16384}, {llada8b(), 32768}, {llada8b(), 262144}, {dream7b(), 32768}, {dream7b(), 262144}};
  for (const auto& [cfg, L] : cases) {
    GraphOptions o;
    o.traits = cuda_traits();
    Graph g = build_step_graph(cfg, o);
    auto p = try_plan_for_budget(g, Dims{L, 32}, 2, SIZE_MAX);
    ASSERT_TRUE(p.has_value());
    EXPECT_LE(p->peak_to_average(), 1.15) << cfg.source << " L=" << L;
  }
}

TEST(ChunkSearch, RelaxedRegionsHoldTheFewestChunksUnderThePeak) {
  // After taming, one more aligned step of rows per chunk in any chunked region would raise
  // the step's peak.
  for (const auto& cfg : {llada8b(), dream7b()}) {
    GraphOptions o;
    o.traits = cuda_traits();
    Graph g = build_step_graph(cfg, o);
    for (int64_t L : {4096, 16384, 65536}) {
      const Dims d{L, 32};
      // Tamed down to the floor (no goal): where the relaxation is not held back by its
      // arena cap (1% over the tamed arena), which it can be at other floors.
      auto p = try_plan_for_budget(g, d, 2, SIZE_MAX, 512, 0.0);
      ASSERT_TRUE(p.has_value());
      for (size_t r = 0; r < g.regions.size(); ++r) {
        if (p->chunks[r] <= 1) continue;
        std::vector<int64_t> bigger = p->chunk_rows;
        bigger[r] = g.chunk_rows(static_cast<int>(r), d, bigger[r]) + kChunkRowAlign;
        MemoryPlan q = make_plan(g, d, bigger, 2);
        EXPECT_GT(q.peak_live, p->peak_live) << cfg.source << " L=" << L << " " << g.regions[r].name;
      }
    }
  }
}

TEST(ChunkSearch, TamingFloorTradesChunksForPeak) {
  // Without the goal, a lower floor never raises the peak; 0 leaves a fitting step unchunked.
  GraphOptions o;
  o.traits = cuda_traits();
  Graph g = build_step_graph(llada8b(), o);
  const Dims d{16384, 32};
  auto off = try_plan_for_budget(g, d, 2, SIZE_MAX, 0, 0.0);
  ASSERT_TRUE(off.has_value());
  for (int c : off->chunks) EXPECT_EQ(c, 1);
  size_t last_peak = off->peak_live;
  for (int64_t floor : {4096, 1024, 256}) {
    auto p = try_plan_for_budget(g, d, 2, SIZE_MAX, floor, 0.0);
    ASSERT_TRUE(p.has_value());
    EXPECT_LT(p->peak_live, last_peak) << "floor " << floor;
    last_peak = p->peak_live;
    for (size_t r = 0; r < g.regions.size(); ++r)
      if (p->chunks[r] > 1) EXPECT_GE(g.chunk_rows(static_cast<int>(r), d, p->chunk_rows[r]), floor);
  }
}

TEST(ChunkSearch, TamingGoalKeepsTheLargestFloorThatMeetsIt) {
  // The default plan is the plan of one floor: the largest candidate (8x, 4x, 2x the minimum)
  // whose plan meets the goal, else the minimum. Which floor that is depends on the model and
  // length, so each case checks the rule, and the set of cases must see both outcomes.
  const double goal = kTameTarget;
  int took_larger = 0, fell_back = 0;
  for (const auto& cfg : {llada8b(), dream7b()}) {
    GraphOptions o;
    o.traits = cuda_traits();
    Graph g = build_step_graph(cfg, o);
    for (int64_t L : {4096, 16384, 32768, 65536}) {
      const Dims d{L, 32};
      auto p = try_plan_for_budget(g, d, 2, SIZE_MAX);
      ASSERT_TRUE(p.has_value());
      const std::string where = cfg.source + " L=" + std::to_string(L);
      auto floor_plan = [&](int64_t floor) { return try_plan_for_budget(g, d, 2, SIZE_MAX, floor, 0.0); };
      auto same = floor_plan(p->tame_floor);
      ASSERT_TRUE(same.has_value()) << where;
      EXPECT_EQ(p->chunk_rows, same->chunk_rows) << where;
      for (int64_t larger = p->tame_floor * 2; larger <= (kTameMinRows << kTameFloorSteps) && 2 * larger <= L;
           larger *= 2)
        EXPECT_GT(floor_plan(larger)->peak_to_average(), goal) << where << ": floor " << larger << " met the goal";
      if (p->tame_floor > kTameMinRows) {
        ++took_larger;
        EXPECT_LE(p->peak_to_average(), goal) << where;
      } else {
        ++fell_back;
        EXPECT_EQ(p->tame_floor, kTameMinRows) << where;
      }
    }
  }
  EXPECT_GT(took_larger, 0);
  EXPECT_GT(fell_back, 0);
}

TEST(PlanCache, ReturnsTheSamePlanForTheSameKey) {
  GraphOptions o;
  Graph g = build_step_graph(llada8b(), o);
  PlanCache cache;
  const MemoryPlan& a = cache.get(g, Dims{1024, 32}, 4, SIZE_MAX);
  const MemoryPlan& b = cache.get(g, Dims{1024, 32}, 4, SIZE_MAX);
  EXPECT_EQ(&a, &b);
  cache.get(g, Dims{1024, 16}, 4, SIZE_MAX);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(&cache.get(g, Dims{1024, 32}, 4, SIZE_MAX, 256), &a) << "the taming floor is part of the key";
  EXPECT_NE(&cache.get(g, Dims{1024, 32}, 4, SIZE_MAX, kTameMinRows, 0.0), &a) << "so is the taming goal";
}

TEST(PlanCache, KeepsAtMostItsBoundDroppingTheOldest) {
  GraphOptions o;
  Graph g = build_step_graph(llada8b(), o);
  PlanCache cache;
  for (int64_t L = 1; L <= static_cast<int64_t>(PlanCache::kMaxPlans) + 10; ++L) cache.get(g, Dims{L, 1}, 4, SIZE_MAX);
  EXPECT_EQ(cache.size(), PlanCache::kMaxPlans);
  const MemoryPlan& newest = cache.get(g, Dims{static_cast<int64_t>(PlanCache::kMaxPlans) + 10, 1}, 4, SIZE_MAX);
  EXPECT_EQ(cache.size(), PlanCache::kMaxPlans) << "the newest was still cached";
  EXPECT_EQ(newest.dims.L, static_cast<int64_t>(PlanCache::kMaxPlans) + 10);
  cache.get(g, Dims{1, 1}, 4, SIZE_MAX);  // the oldest was dropped: planned again, another goes
  EXPECT_EQ(cache.size(), PlanCache::kMaxPlans);
}

// A cache-like graph: two persistent tensors (constant rows, as a sequence's cache would
// be), read by a chunkable region over L rows that also makes transients.
Graph graph_with_persistent_tensors() {
  Graph g;
  const SymDim L = SymDim::tokens(), M = SymDim::masked();
  int ids = g.add_tensor({"tokens", TensorKind::Input, ElemType::I32, L, SymDim::constant(1)});
  int k_cache = g.add_tensor({"k_cache", TensorKind::Persistent, ElemType::Act, SymDim::constant(300),
                              SymDim::constant(64)});
  int v_cache = g.add_tensor({"v_cache", TensorKind::Persistent, ElemType::Act, SymDim::constant(300),
                              SymDim::constant(64)});
  int x = g.add_tensor({"x", TensorKind::Activation, ElemType::Act, L, SymDim::constant(128)});
  int reg = g.begin_region({"r", L, true});
  int h = g.add_tensor({"h", TensorKind::Activation, ElemType::Act, L, SymDim::constant(512), reg});
  g.add_node(Node{Op::Embed, {{ids}}, {{h}}});
  g.add_node(Node{Op::Attention, {{h}, {k_cache, true}, {v_cache, true}}, {{x}}});
  g.end_region();
  int out = g.add_tensor({"out", TensorKind::Output, ElemType::Act, M, SymDim::constant(128)});
  g.begin_region({"head", M, false});
  g.add_node(Node{Op::GatherRows, {{x, true}}, {{out}}});
  g.end_region();
  g.validate();
  return g;
}

TEST(MemoryPlan, PersistentTensorsLiveTheWholeStepAtStableOffsets) {
  Graph g = graph_with_persistent_tensors();
  const size_t cache_bytes = align_up(300 * 64 * 4, kTensorAlignment);
  std::vector<MemoryPlan> plans = {make_plan(g, Dims{100, 4}, std::vector<int>{1, 1}, 4),
                                   make_plan(g, Dims{5000, 64}, std::vector<int>{1, 1}, 4),
                                   make_plan(g, Dims{5000, 64}, std::vector<int>{7, 1}, 4)};
  plans.push_back(plan_for_budget(g, Dims{5000, 64}, 4, plans[1].arena_bytes() / 2, 256, 0.0));
  for (const MemoryPlan& p : plans) {
    SCOPED_TRACE(p.dims.L);
    for (int t : {1, 2}) {  // k_cache, v_cache
      EXPECT_EQ(p.life[t].first, 0);
      EXPECT_EQ(p.life[t].last, static_cast<int>(g.nodes.size()) - 1);
    }
    // Declaration order at the arena's start: the same offsets whatever the shape or chunking.
    EXPECT_EQ(p.placement.offset[1], 0u);
    EXPECT_EQ(p.placement.offset[2], cache_bytes);
    EXPECT_EQ(p.persistent_bytes(), 2 * cache_bytes);
    for (size_t t = 3; t < g.tensors.size(); ++t)
      if (p.life[t].planned() && p.life[t].bytes) EXPECT_GE(p.placement.offset[t], p.persistent_bytes());
    for (size_t live : p.live) EXPECT_GE(live, 2 * 300 * 64 * 4u) << "the caches count at every node";
    expect_valid_placement(p.life, p.placement);
  }
  EXPECT_GT(plans[3].chunks[0], 1) << "half the budget must chunk the transients, not the caches";

  // A persistent tensor whose size follows the step's shape could not keep its offset.
  Graph bad = graph_with_persistent_tensors();
  bad.tensors[1].rows = SymDim::tokens();
  EXPECT_THROW(bad.validate(), Error);
}

}  // namespace
}  // namespace mosaic
