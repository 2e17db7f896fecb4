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
  throw Error(message + " (" + rel + ":" + std::to_string(line) + ")");
}

}  // namespace lowrank
