// The world of ranks: Open MPI when built with it (LOWRANK_WITH_MPI) and started by mpirun, else a
// world of one where every collective returns at once.
#include "tools/dist/dist.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

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

// ---- the watchdog
//
// mpirun ends the other ranks when one dies, but a rank must not rely on that: a launcher killed
// outright, or a rank that hangs instead of dying, would leave the others waiting in a collective
// for ever (over shared memory nothing notices a dead peer). While this process waits in a
// collective, a thread looks every kPollMs at the peers on its own host (their pids, exchanged at
// start), at its launcher (the parent process) and, with LOWRANK_DIST_TIMEOUT=SECONDS, at the time
// waited; on any of them it says which in one line and ends the process (exit code 1). It acts only
// inside a collective, never while the leader writes a file, so a checkpoint is never cut short; a
// death elsewhere is seen at the next collective, within a step.
constexpr int kPollMs = 100;

struct Peer {
  int rank;
  pid_t pid;
};

std::vector<Peer> g_local_peers;          // the other ranks on this host
pid_t g_launcher = 0;                     // the parent process at start (mpirun or its daemon)
double g_timeout = 0;                     // LOWRANK_DIST_TIMEOUT (0: no limit)
std::atomic<int64_t> g_waiting_since{0};  // steady_clock nanoseconds at the start of the collective; 0: none
std::atomic<const char*> g_waiting_in{""};
std::atomic<bool> g_stop{false};
std::thread g_watchdog;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A process that is gone, or a zombie its parent has not reaped yet.
bool dead(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

[[noreturn]] void watchdog_exit(const std::string& why) {
  const std::string line = detail::format("lowrank: error: rank {} of {}: {}; ending this rank\n", g_rank, g_size, why);
  if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {
  }
  std::_Exit(1);
}

void watch() {
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
    const int64_t since = g_waiting_since.load();
    if (since == 0) continue;
    const char* what = g_waiting_in.load();
    for (const Peer& p : g_local_peers)
      if (dead(p.pid))
        watchdog_exit(
            detail::format("rank {} (pid {}) has died while this rank waited for it in {}", p.rank, p.pid, what));
    if (getppid() != g_launcher)
      watchdog_exit(detail::format("the launcher (pid {}) has gone while this rank waited in {}", g_launcher, what));
    const double waited = static_cast<double>(now_ns() - since) * 1e-9;
    if (g_timeout > 0 && waited > g_timeout)
      watchdog_exit(detail::format("waited {} s in {}, over LOWRANK_DIST_TIMEOUT={} (a rank has hung or died)",
                                   static_cast<int64_t>(waited), what, g_timeout));
  }
}

// Marks this process as waiting in a collective for the watchdog, for the guard's lifetime.
class Waiting {
 public:
  explicit Waiting(const char* what) {
    g_waiting_in.store(what);
    g_waiting_since.store(now_ns());
  }
  ~Waiting() { g_waiting_since.store(0); }
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;
};

// Exchanges (host, pid) over the world and starts the watchdog thread.
void start_watchdog() {
  if (const char* t = std::getenv("LOWRANK_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    g_timeout = std::strtod(t, &end);
    if (end == t || *end != '\0' || !(g_timeout >= 0)) {
      if (g_rank == 0)  // every rank reads the same value and ends alike
        std::fprintf(stderr, "lowrank: error: LOWRANK_DIST_TIMEOUT must be a number of seconds (0: none), got '%s'\n",
                     t);
      MPI_Finalize();
      std::exit(2);
    }
  }
  // A host is its name and its kernel's boot id (two containers of one name on two machines differ).
  constexpr int kHost = 256;
  struct Me {
    char host[kHost];
    long long pid;
  } me{};
  std::string host(kHost, '\0');
  gethostname(host.data(), 128);
  host.resize(std::strlen(host.c_str()));
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot, boot_id);
  host = (host + " " + boot_id).substr(0, kHost - 1);
  std::memcpy(me.host, host.data(), host.size());
  me.pid = getpid();
  std::vector<Me> all(static_cast<size_t>(g_size));
  if (MPI_Allgather(&me, sizeof(Me), MPI_BYTE, all.data(), sizeof(Me), MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS)
    return;  // no watchdog: mpirun alone ends a broken world
  for (int r = 0; r < g_size; ++r)
    if (r != g_rank && std::strncmp(all[r].host, me.host, kHost) == 0 && kill(static_cast<pid_t>(all[r].pid), 0) == 0)
      g_local_peers.push_back({r, static_cast<pid_t>(all[r].pid)});
  g_launcher = getppid();
  g_stop.store(false);
  g_watchdog = std::thread(watch);
}

void stop_watchdog() {
  if (!g_watchdog.joinable()) return;
  g_stop.store(true);
  g_watchdog.join();
  g_local_peers.clear();
}

// Open MPI's ring all-reduce moved two ranks' gradient buckets on one machine about twice as fast
// as the algorithm its fixed decision rule picks (bench/dist_bench, 2 ranks, the small GPT-2's 64 MB
// in 4 MiB buckets: 13-22 ms against 26-36 ms; the MLP's 0.47 MB ~0.1 ms either way). So the ring
// is the default here; a choice on the mpirun line (--mca, which sets these variables) wins, as
// does a rules file. Other MPIs ignore the variables.
void prefer_ring_all_reduce() {
  setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
  setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", "4", 0);
}
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
  prefer_ring_all_reduce();
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
  if (g_size > 1) start_watchdog();
#endif
}

World::~World() {
#if LOWRANK_WITH_NCCL
  nccl::shutdown();
#endif
#if LOWRANK_WITH_MPI
  stop_watchdog();  // MPI_Finalize waits for every rank, then ranks leave at their own pace
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
  Waiting waiting("an all-reduce");
  for (int64_t off = 0; off < n; off += kMaxCount)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxCount, n - off)), MPI_FLOAT, MPI_SUM,
                        MPI_COMM_WORLD),
          "all-reduce");
#endif
}

void all_reduce_sum([[maybe_unused]] double* data, [[maybe_unused]] int64_t n) {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  Waiting waiting("an all-reduce");
  for (int64_t off = 0; off < n; off += kMaxCount)
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxCount, n - off)), MPI_DOUBLE, MPI_SUM,
                        MPI_COMM_WORLD),
          "all-reduce");
#endif
}

void broadcast([[maybe_unused]] void* data, [[maybe_unused]] int64_t bytes, [[maybe_unused]] int root) {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  Waiting waiting("a broadcast");
  char* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += kMaxCount)
    check(MPI_Bcast(p + off, static_cast<int>(std::min(kMaxCount, bytes - off)), MPI_BYTE, root, MPI_COMM_WORLD),
          "broadcast");
#endif
}

void barrier() {
#if LOWRANK_WITH_MPI
  if (g_size <= 1) return;
  Waiting waiting("a barrier");
  check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
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
  Waiting waiting("a gather");
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
