// The world of ranks: Open MPI when built with it (LOWRANK_WITH_MPI) and started by mpirun, else a
// world of one where every collective returns at once.
#include "tools/dist/dist.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

#if LOWRANK_WITH_MPI
#include <mpi.h>
#endif
#if LOWRANK_WITH_NCCL
#include "tools/dist/nccl.h"
#endif

namespace lowrank::dist {
namespace {

int g_rank = 0;
int g_size = 1;
[[maybe_unused]] bool g_mpi = false;  // MPI_Init was called by World

#if LOWRANK_WITH_MPI
// A failed collective (MPI_ERRORS_RETURN is set on the world) becomes one line.
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(detail::format("{} failed on rank {} of {}: {} (another rank has probably stopped)", what, g_rank, g_size,
                             std::string(text, static_cast<size_t>(len))));
}

// MPI counts are ints: larger buffers go in pieces of this many elements.
constexpr int64_t kMaxCount = INT_MAX / 8;
#endif

}  // namespace

bool built_with_mpi() {
  return LOWRANK_WITH_MPI != 0;
}

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

World::World([[maybe_unused]] int* argc, [[maybe_unused]] char*** argv) {
#if LOWRANK_WITH_MPI
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised || !launched_by_mpirun()) return;
  int provided = 0;
  // Only the main thread calls MPI; OpenMP and OpenBLAS threads never do.
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "lowrank: error: MPI_Init failed (started by mpirun, but MPI could not start)\n");
    std::exit(1);
  }
  g_mpi = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#endif
}

World::~World() {
#if LOWRANK_WITH_NCCL
  nccl::shutdown();
#endif
#if LOWRANK_WITH_MPI
  if (g_mpi) MPI_Finalize();
  g_mpi = false;
#endif
  g_rank = 0, g_size = 1;
}

int rank() {
  return g_rank;
}
int size() {
  return g_size;
}
bool is_leader() {
  return g_rank == 0;
}
bool distributed() {
  return g_size > 1;
}

std::string backend_name() {
#if LOWRANK_WITH_MPI
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<size_t>(len));
  if (auto comma = s.find(','); comma != std::string::npos) s.resize(comma);  // "Open MPI v4.1.4, package: ..."
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
#else
  return "none";
#endif
}

void abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#if LOWRANK_WITH_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

void all_reduce_sum([[maybe_unused]] float* data, [[maybe_unused]] int64_t n) {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  for (int64_t off = 0; off < n; off += kMaxCount)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxCount, n - off)), MPI_FLOAT, MPI_SUM,
                        MPI_COMM_WORLD),
          "all-reduce");
#endif
}

void all_reduce_sum([[maybe_unused]] double* data, [[maybe_unused]] int64_t n) {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  for (int64_t off = 0; off < n; off += kMaxCount)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxCount, n - off)), MPI_DOUBLE, MPI_SUM,
                        MPI_COMM_WORLD),
          "all-reduce");
#endif
}

void broadcast([[maybe_unused]] void* data, [[maybe_unused]] int64_t bytes, [[maybe_unused]] int root) {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  char* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += kMaxCount)
    check(MPI_Bcast(p + off, static_cast<int>(std::min(kMaxCount, bytes - off)), MPI_BYTE, root, MPI_COMM_WORLD),
          "broadcast");
#endif
}

void barrier() {
#if LOWRANK_WITH_MPI
  if (g_size > 1) check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
#endif
}

bool broadcast_flag(bool value, int root) {
  char v = value ? 1 : 0;
  broadcast(&v, 1, root);
  return v != 0;
}

std::vector<std::string> gather_strings(const std::string& text, [[maybe_unused]] int root) {
  if (g_size <= 1) return {text};
#if LOWRANK_WITH_MPI
  LR_CHECK(text.size() < static_cast<size_t>(INT_MAX), "gather: {} bytes are too many for one message", text.size());
  int len = static_cast<int>(text.size());
  std::vector<int> lens(g_rank == root ? g_size : 0);
  check(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "gather");
  std::vector<int> offsets(lens.size());
  int64_t total = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    offsets[i] = static_cast<int>(total);
    total += lens[i];
  }
  LR_CHECK(total < INT_MAX, "gather: {} bytes are too many for one message", total);
  std::string all(static_cast<size_t>(total), '\0');
  check(
      MPI_Gatherv(text.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, root, MPI_COMM_WORLD),
      "gather");
  std::vector<std::string> out;
  for (size_t i = 0; i < lens.size(); ++i) out.push_back(all.substr(static_cast<size_t>(offsets[i]), lens[i]));
  return out;
#else
  return {text};
#endif
}

std::pair<int64_t, int64_t> shard(int64_t n, int r, int world) {
  LR_CHECK(world >= 1 && r >= 0 && r < world, "shard: rank {} of {}", r, world);
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = r * base + std::min<int64_t>(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace lowrank::dist
