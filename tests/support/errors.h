// Expecting a lowrank::Error: throws_with (an assertion result), EXPECT_LR_ERROR (the same check
// as a statement) and error_of (the message, for checks of its own).
#pragma once
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace lowrank::test {

// Runs `fn`, which must throw lowrank::Error with every word of `words` in its message.
template <class F>
::testing::AssertionResult throws_with(F&& fn, std::initializer_list<std::string> words) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& w : words)
      if (m.find(w) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << w << "\": " << m;
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-lowrank exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// The message of the lowrank::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace lowrank::test

// Runs `stmt`, which must throw lowrank::Error whose message contains every one of the strings.
#define EXPECT_LR_ERROR(stmt, ...) \
  EXPECT_TRUE(::lowrank::test::throws_with([&] { stmt; }, {__VA_ARGS__})) << "from " #stmt
