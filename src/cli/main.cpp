// mosaic: the command line. Thin: parse flags, call the library, print.
#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // Every BLAS call runs inside mosaic's own OpenMP threads, one BLAS thread each. OpenBLAS's
  // pool would only spin against those threads, for a while after this is set: so at once.
  openblas_set_num_threads(1);
  CLI::App app{
      "mosaic: long-context inference for diffusion language models (LLaDA, Dream).\n"
      "Runs each denoising step from one global memory plan, with mask-only logits and lazy chunking."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mosaic 0.1.0");
  mosaic::cli::add_generate(app);
  mosaic::cli::add_info(app);
  mosaic::cli::add_bench(app);
  mosaic::cli::add_eval(app);
  mosaic::cli::add_chat(app);
#ifdef MOSAIC_SERVE
  mosaic::cli::add_serve(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mosaic::OutOfBudget& e) {
    fmt::print(stderr, "mosaic: error: {}\n", e.what());
    return 3;
  } catch (const mosaic::Error& e) {
    fmt::print(stderr, "mosaic: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "mosaic: internal error: {}\n", e.what());
    return 1;
  }
  return mosaic::cli::exit_code();
}
