// Labelled text from fortune-style folders or label<TAB>text files, split by a hash of the text.
#include "models/gpt2/label_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "models/gpt2/text_data.h"

namespace lowrank::models::gpt2 {
namespace fs = std::filesystem;

namespace {

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LR_CHECK(in.good(), "labelled data: cannot open {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  LR_CHECK(!in.bad(), "labelled data: cannot read {}", path);
  return ss.str();
}

std::string trim(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t\r\n\f\v");
  if (a == std::string_view::npos) return {};
  const size_t b = s.find_last_not_of(" \t\r\n\f\v");
  return std::string(s.substr(a, b - a + 1));
}

bool is_default_corpus(const std::string& dir) {
  std::error_code ec;
  return fs::equivalent(dir, kDefaultCorpusDir, ec) && !ec;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

const char* split_name(Split s) {
  switch (s) {
    case Split::Train:
      return "train";
    case Split::Val:
      return "val";
    case Split::Test:
      return "test";
  }
  return "?";
}

Split split_of(std::string_view text) {
  const uint64_t bucket = fnv1a64(text) % 10;
  return bucket == 0 ? Split::Test : bucket == 1 ? Split::Val : Split::Train;
}

std::vector<std::string> available_classes(const std::string& dir) {
  LR_CHECK(fs::is_directory(dir), "labelled data: {} is not a folder", dir);
  std::vector<std::string> names;
  // list_text_files throws for a folder without text files: say it in this task's words.
  std::vector<std::string> files;
  try {
    files = list_text_files({dir});
  } catch (const Error&) {
    LR_FAIL("labelled data: folder {} is empty (each text file in it is a class)", dir);
  }
  for (const std::string& f : files) names.push_back(fs::path(f).filename().string());
  return names;
}

LabelData load_label_data(const LabelDataOptions& o) {
  LabelData d;
  // (class name, its documents) in the order the classes are kept
  std::vector<std::pair<std::string, std::vector<std::string>>> docs;
  if (!o.file.empty()) {
    d.source = o.file;
    LR_CHECK(fs::is_regular_file(o.file), "labelled data: {} is not a file", o.file);
    const std::string text = read_whole(o.file);
    std::map<std::string, size_t> index;
    std::istringstream lines(text);
    std::string line;
    int64_t number = 0;
    while (std::getline(lines, line)) {
      ++number;
      if (trim(line).empty()) continue;
      const size_t tab = line.find('\t');
      LR_CHECK(tab != std::string::npos, "labelled data: line {} of {} has no tab (expected label<TAB>text)", number,
               o.file);
      const std::string label = trim(std::string_view(line).substr(0, tab));
      const std::string body = trim(std::string_view(line).substr(tab + 1));
      LR_CHECK(!label.empty(), "labelled data: line {} of {} has an empty label", number, o.file);
      auto [it, fresh] = index.emplace(label, docs.size());
      if (fresh) docs.emplace_back(label, std::vector<std::string>{});
      if (!body.empty()) docs[it->second].second.push_back(body);
    }
    LR_CHECK(!docs.empty(), "labelled data: {} holds no labelled lines", o.file);
    if (!o.classes.empty()) {
      std::vector<std::pair<std::string, std::vector<std::string>>> kept;
      for (const std::string& c : o.classes) {
        auto it = index.find(c);
        LR_CHECK(it != index.end(), "labelled data: no class '{}' in {} (it has {})", c, o.file, [&] {
          std::vector<std::string> n;
          for (auto& p : docs) n.push_back(p.first);
          return join(n);
        }());
        kept.push_back(docs[it->second]);
      }
      docs = std::move(kept);
    }
  } else {
    const std::string dir = o.dir.empty() ? std::string(kDefaultCorpusDir) : o.dir;
    d.source = dir;
    const std::vector<std::string> have = available_classes(dir);
    std::vector<std::string> want = o.classes;
    if (want.empty())
      want = is_default_corpus(dir)
                 ? std::vector<std::string>(std::begin(kDefaultLabelClasses), std::end(kDefaultLabelClasses))
                 : have;
    for (const std::string& c : want) {
      LR_CHECK(std::find(have.begin(), have.end(), c) != have.end(), "labelled data: no class '{}' in {} (it has {})",
               c, dir, join(have));
      std::vector<std::string> texts;
      const std::string text = read_whole((fs::path(dir) / c).string());
      for (std::string_view doc : split_documents(text)) texts.push_back(trim(doc));
      docs.emplace_back(c, std::move(texts));
    }
  }
  LR_CHECK(docs.size() >= 2, "labelled data: {} gives {} class{}; classification needs at least 2", d.source,
           docs.size(), docs.size() == 1 ? "" : "es");
  for (size_t k = 0; k < docs.size(); ++k) {
    auto& [name, texts] = docs[k];
    LR_CHECK(std::find(d.classes.begin(), d.classes.end(), name) == d.classes.end(),
             "labelled data: class '{}' is named twice", name);
    LR_CHECK(!texts.empty(), "labelled data: class '{}' has no documents in {}", name, d.source);
    d.classes.push_back(name);
    d.documents_per_class.push_back(static_cast<int64_t>(texts.size()));
    int64_t in_train = 0;
    for (std::string& t : texts) {
      const Split s = split_of(t);
      auto& part = s == Split::Train ? d.train : s == Split::Val ? d.val : d.test;
      in_train += s == Split::Train;
      part.push_back({std::move(t), static_cast<int64_t>(k)});
    }
    LR_CHECK(in_train > 0, "labelled data: class '{}' has {} document{} and none falls in the training split", name,
             texts.size(), texts.size() == 1 ? "" : "s");
  }
  return d;
}

}  // namespace lowrank::models::gpt2
