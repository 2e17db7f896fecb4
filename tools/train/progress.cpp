// ProgressLine: "\r[=====>    ] text ETA 1:05" with an erase-to-end-of-line escape.
#include "tools/train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tools/train/clock.h"

namespace lowrank::train {

bool ProgressLine::stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

ProgressLine::ProgressLine(bool enabled) : enabled_(enabled && stderr_is_terminal()), start_(now_seconds()) {}

ProgressLine::~ProgressLine() {
  clear();
}

void ProgressLine::restart() {
  start_ = now_seconds();
}

void ProgressLine::draw(double fraction, const std::string& text, bool force) {
  if (!enabled_) return;
  const double t = now_seconds();
  if (!force && t - last_ < 0.1) return;
  last_ = t;
  fraction = std::isfinite(fraction) ? std::clamp(fraction, 0.0, 1.0) : 0.0;
  constexpr int kWidth = 20;
  const int filled = static_cast<int>(kWidth * fraction);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
  const double elapsed = t - start_;
  const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : NAN;
  std::fprintf(stderr, "\r[%s] %s ETA %s\x1b[K", bar.c_str(), text.c_str(), clock_text(eta).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::clear() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\x1b[K");
  std::fflush(stderr);
  drawn_ = false;
}

void ProgressLine::print(const std::string& line) {
  clear();
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace lowrank::train
