// The one progress line of the tools: a bar, a caller's text and an ETA, redrawn in place on
// stderr when stderr is a terminal and silent otherwise, so logs stay one line per record.
#pragma once
#include <string>

namespace lowrank::train {

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // `fraction` of the work done (for the bar and the ETA, counted from construction or restart()),
  // `text` the rest of the line. Redraws at most ten times a second unless `force`.
  void draw(double fraction, const std::string& text, bool force = false);
  // Removes the line (the next draw() puts it back).
  void clear();
  // A log line on stderr that does not collide with the progress line.
  void print(const std::string& line);
  // The ETA counts from now.
  void restart();
  bool enabled() const { return enabled_; }
  static bool stderr_is_terminal();

 private:
  bool enabled_, drawn_ = false;
  double start_, last_ = -1.0;
};

}  // namespace lowrank::train
