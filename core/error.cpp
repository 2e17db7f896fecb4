// Builds the text of a lowrank::Error: the message, then where it was raised.
#include "core/error.h"

#include <cstring>

namespace lowrank {

void throw_error(const char* file, int line, const std::string& message) {
  // Keep the path from the project root on: "core/ops/matmul.cpp:42", not the build machine's.
  const char* rel = file;
  for (const char* root : {"/core/", "/kernels/", "/nn/", "/optim/", "/models/", "/analysis/", "/tools/"}) {
    if (const char* p = std::strstr(file, root)) {
      rel = p + 1;
      break;
    }
  }
  // The last guard against echoing unbounded input (a 10 MB tensor name, a JSON value): no message
  // a person reads needs more than this.
  constexpr size_t kMaxMessage = 2000;
  std::string text = message;
  if (text.size() > kMaxMessage) {
    size_t cut = kMaxMessage;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
    text = text.substr(0, cut) + "... (" + std::to_string(message.size()) + " bytes)";
  }
  throw Error(text + " (" + rel + ":" + std::to_string(line) + ")");
}

}  // namespace lowrank
