// One PNG figure on its own PLplot stream, shared by every file that draws (plot.cpp,
// plot_confusion.cpp): PLplot keeps global state, so the caller holds
// plplot_mutex() for the figure's whole life; the figure renders into a temporary file next to the
// target and finish() renames it into place once PLplot has closed it (a throw leaves nothing).
#pragma once
#include <plplot.h>

#include <mutex>
#include <string>

namespace lowrank::analysis::detail {

// The one lock around PLplot's global state.
std::mutex& plplot_mutex();

class Figure {
 public:
  // `op` names the caller in errors. `colours` sets the colour maps (plscmap0/1); it runs before
  // plinit, as PLplot requires. Checks the size and that the folder exists and is writable.
  Figure(const char* op, const std::string& path, int width, int height, void (*colours)());
  Figure(const Figure&) = delete;
  Figure& operator=(const Figure&) = delete;
  ~Figure();
  // Closes the stream; throws (removing the temporary) if PLplot warned or wrote nothing, else
  // renames the file into place.
  void finish();

 private:
  const char* op_;
  std::string path_, tmp_;
  PLINT stream_ = 0;
  bool open_ = false;
};

}  // namespace lowrank::analysis::detail
