// GPT-2 tokenizer throughput on the fortunes corpus (every file of /usr/share/games/fortunes/ but
// the .dat indexes and .u8 links, as training reads it): encode with a cold and a warm piece cache,
// the regex split alone, decode, and loading the vocabulary. Bytes/s counters are MB/s of text.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "models/gpt2/tokenizer.h"

using lowrank::models::gpt2::Tokenizer;
namespace fs = std::filesystem;

namespace {

const std::string& corpus() {
  static const std::string text = [] {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/usr/share/games/fortunes", ec)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && !e.is_symlink() && ext != ".dat" && ext != ".u8") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::string all;
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return all;
  }();
  return text;
}

// nullptr (and the benchmark skipped) when the vocabulary or the corpus is not installed.
const Tokenizer* tokenizer(benchmark::State& state) {
  static const std::unique_ptr<Tokenizer> tok = []() -> std::unique_ptr<Tokenizer> {
    try {
      return std::make_unique<Tokenizer>(Tokenizer::from_dir(Tokenizer::default_dir()));
    } catch (const std::exception&) {
      return nullptr;
    }
  }();
  if (!tok)
    state.SkipWithError("no GPT-2 vocabulary (run tools/setup)");
  else if (corpus().empty())
    state.SkipWithError("no fortunes corpus in /usr/share/games/fortunes (tools/setup)");
  return tok && !corpus().empty() ? tok.get() : nullptr;
}

void report(benchmark::State& state, size_t tokens) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus().size()));
  state.counters["corpus_MB"] = static_cast<double>(corpus().size()) / 1e6;
  state.counters["tokens"] = static_cast<double>(tokens);
}

// What training start-up pays: every piece merged once, then cache hits.
void BM_EncodeColdCache(benchmark::State& state) {
  const Tokenizer* tok = tokenizer(state);
  if (!tok) return;
  size_t tokens = 0;
  for (auto _ : state) {
    tok->clear_cache();
    auto ids = tok->encode(corpus());
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  report(state, tokens);
}
BENCHMARK(BM_EncodeColdCache)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_EncodeWarmCache(benchmark::State& state) {
  const Tokenizer* tok = tokenizer(state);
  if (!tok) return;
  tok->encode(corpus());
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(corpus());
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  report(state, tokens);
  state.counters["cached_pieces"] = static_cast<double>(tok->cache_size());
}
BENCHMARK(BM_EncodeWarmCache)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// The PCRE2 split alone (JIT), the floor under encode.
void BM_PreTokenize(benchmark::State& state) {
  const Tokenizer* tok = tokenizer(state);
  if (!tok) return;
  size_t pieces = 0;
  for (auto _ : state) {
    auto p = tok->pre_tokenize(corpus());
    pieces = p.size();
    benchmark::DoNotOptimize(p.data());
  }
  report(state, 0);
  state.counters["pieces"] = static_cast<double>(pieces);
}
BENCHMARK(BM_PreTokenize)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_Decode(benchmark::State& state) {
  const Tokenizer* tok = tokenizer(state);
  if (!tok) return;
  const auto ids = tok->encode(corpus());
  for (auto _ : state) {
    auto text = tok->decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  report(state, ids.size());
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Reading and checking encoder.json + vocab.bpe, and compiling the split pattern.
void BM_LoadVocabulary(benchmark::State& state) {
  if (!tokenizer(state)) return;
  for (auto _ : state) {
    auto tok = Tokenizer::from_dir(Tokenizer::default_dir());
    benchmark::DoNotOptimize(tok.vocab_size());
  }
}
BENCHMARK(BM_LoadVocabulary)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
