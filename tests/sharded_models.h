#pragma once
// One model loaded on several backends, its steps sharded across them (Model::set_shards), with
// the ranks talking through a LocalGroup: CPU backends copy with memcpy, GPU backends that share
// one device with the copy given.
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/model.h"
#include "parallel/local_group.h"

namespace mosaic::test {

struct ShardedModel {
  // make(r): rank r's backend.
  template <class MakeBackend>
  ShardedModel(const std::string& dir, int ranks, MakeBackend make, parallel::LocalGroup::CopyFn copy = nullptr,
               parallel::Exchange exchange = parallel::Exchange::Auto)
      : group(ranks, copy) {
    for (int r = 0; r < ranks; ++r) {
      backends.push_back(make(r));
      models.push_back(std::make_unique<Model>(dir, *backends.back()));
    }
    std::vector<Model*> peers;
    std::vector<parallel::Communicator*> comms;
    for (int r = 0; r < ranks; ++r) {
      if (r > 0) peers.push_back(models[static_cast<size_t>(r)].get());
      comms.push_back(&group.rank(r));
    }
    models[0]->set_shards(peers, comms, exchange);
  }
  Model& model() { return *models[0]; }

  parallel::LocalGroup group;
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<std::unique_ptr<Model>> models;
};

inline std::unique_ptr<ShardedModel> sharded_cpu_model(const std::string& dir, int ranks,
                                                       parallel::Exchange exchange = parallel::Exchange::Auto) {
  return std::make_unique<ShardedModel>(dir, ranks, [](int) { return make_cpu_backend(); }, nullptr, exchange);
}

}  // namespace mosaic::test
