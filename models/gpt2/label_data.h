// Labelled text for sequence classification: each file of a folder is a class (the fortunes
// categories by default, documents between "%" lines), or a `label<TAB>text` file; documents go
// to train / validation / test 80/10/10 by a hash of their text, stable across runs and platforms.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lowrank::models::gpt2 {

// Eight fortunes categories with at least 400 documents each (Debian's fortunes-min/fortunes:
// 465 to 1203), on different topics so that the task is learnable but not trivial.
inline constexpr const char* kDefaultLabelClasses[] = {"computers", "politics", "science", "songs-poems",
                                                       "men-women", "work",     "art",     "definitions"};

enum class Split : uint8_t { Train, Val, Test };
const char* split_name(Split s);
// The split of a document: FNV-1a 64 of its bytes mod 10 — 0 test, 1 validation, else train.
// Duplicates land on the same side, and adding or removing documents moves no other.
Split split_of(std::string_view text);

struct LabelledText {
  std::string text;
  int64_t label = 0;  // index into LabelData::classes
};

struct LabelData {
  std::vector<std::string> classes;
  std::vector<LabelledText> train, val, test;
  std::vector<int64_t> documents_per_class;  // all splits
  std::string source;                        // the folder or file read
};

struct LabelDataOptions {
  // A folder whose files are the classes (file name = class; hidden, .dat and .u8 files skipped).
  std::string dir;
  // Or a file of `label<TAB>text` lines (blank lines skipped); takes precedence over dir.
  std::string file;
  // The classes to keep, in this order. Empty: for a folder, the eight defaults when it is the
  // fortunes folder and every file otherwise; for a file, every label in order of first appearance.
  std::vector<std::string> classes;
};

// The class names `dir` offers (its text files' names), sorted; throws when there is none.
std::vector<std::string> available_classes(const std::string& dir);

// Reads and splits the data. Throws lowrank::Error (one line) for a missing or empty folder or
// file, a line without a tab, a class named in options.classes that the data lacks, a class with
// no documents or none in the training split, and fewer than two classes.
LabelData load_label_data(const LabelDataOptions& options);

}  // namespace lowrank::models::gpt2
