// detail::Figure: a PLplot stream into a temporary file, renamed into place once closed.
#include "analysis/plot_figure.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace lowrank::analysis::detail {
namespace {

namespace fs = std::filesystem;

// The first warning PLplot raised (plabort) while drawing the current figure; plplot_mutex() guards it.
std::string g_plot_warning;

void on_plplot_abort(PLCHAR_VECTOR message) {
  if (g_plot_warning.empty()) g_plot_warning = message ? message : "unknown PLplot error";
}
// PLplot exits the process after a fatal error whatever this returns; say why in our own words.
int on_plplot_exit(PLCHAR_VECTOR message) {
  std::fprintf(stderr, "lowrank: error: plot: PLplot failed: %s\n", message ? message : "");
  return 1;
}

}  // namespace

std::mutex& plplot_mutex() {
  static std::mutex m;
  return m;
}

Figure::Figure(const char* op, const std::string& path, int width, int height, void (*colours)())
    : op_(op), path_(path) {
  LR_CHECK(!path.empty(), "{}: empty output path", op);
  LR_CHECK(width >= 100 && width <= 10000 && height >= 100 && height <= 10000,
           "{}: figure size {} x {} pixels outside 100..10000", op, width, height);
  const fs::path parent = fs::path(path).parent_path();
  LR_CHECK(parent.empty() || fs::is_directory(parent), "{}: folder '{}' does not exist (writing {})", op,
           parent.string(), path);
  static std::atomic<uint64_t> counter{0};
  tmp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  // PLplot exits the process when it cannot open its output: find that out here instead.
  std::FILE* probe = std::fopen(tmp_.c_str(), "wb");
  LR_CHECK(probe != nullptr, "{}: cannot write '{}'", op, path);
  std::fclose(probe);

  g_plot_warning.clear();
  plsexit(on_plplot_exit);
  plsabort(on_plplot_abort);
  plmkstrm(&stream_);
  plsdev("pngcairo");
  plsfnam(tmp_.c_str());
  plspage(0.0, 0.0, width, height, 0, 0);
  if (colours) colours();
  plinit();
  open_ = true;
  plsfont(PL_FCI_SANS, PL_FCI_UPRIGHT, PL_FCI_MEDIUM);
  pladv(0);
}

void Figure::finish() {
  plsstrm(stream_);
  plend1();
  open_ = false;
  std::error_code ec;
  const bool wrote = fs::exists(tmp_, ec) && fs::file_size(tmp_, ec) > 0;
  if (!g_plot_warning.empty() || !wrote) {
    fs::remove(tmp_, ec);
    LR_FAIL("{}: PLplot could not draw '{}': {}", op_, path_, g_plot_warning.empty() ? "empty output" : g_plot_warning);
  }
  fs::rename(tmp_, path_, ec);
  if (ec) {
    fs::remove(tmp_, ec);
    LR_FAIL("{}: cannot move the figure into '{}'", op_, path_);
  }
}

Figure::~Figure() {
  if (open_) {
    plsstrm(stream_);
    plend1();
  }
  std::error_code ec;
  fs::remove(tmp_, ec);  // a no-op after a successful rename
}

}  // namespace lowrank::analysis::detail
