// The error types (errors.hpp): one hierarchy under parallel::error (a std::runtime_error), so
// that `catch (const parallel::error&)` catches whatever the library raises itself, with the
// message kept, and remote_error carrying the remote exception's type name and item index.
#include <cstddef>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "catch.hpp"

namespace {

/// Throws E and returns what a handler for Base saw, or "" if Base did not catch it.
template <class Base, class E>
std::string caught_as(E thrown) {
  try {
    throw thrown;
  } catch (const Base& e) {
    return e.what();
  } catch (...) {
    return "";
  }
}

}  // namespace

TEST_CASE("errors: every error derives from parallel::error and std::runtime_error", "[errors]") {
  static_assert(std::is_base_of_v<std::runtime_error, parallel::error>);
  static_assert(std::is_base_of_v<parallel::error, parallel::remote_error>);
  static_assert(std::is_base_of_v<parallel::error, parallel::worker_died>);
  static_assert(std::is_base_of_v<parallel::error, parallel::timeout_error>);
  static_assert(std::is_base_of_v<parallel::error, parallel::spawn_error>);
  // Distinct types, so that a handler can tell them apart.
  static_assert(!std::is_base_of_v<parallel::worker_died, parallel::timeout_error>);
  static_assert(!std::is_base_of_v<parallel::timeout_error, parallel::worker_died>);
  static_assert(!std::is_base_of_v<parallel::remote_error, parallel::spawn_error>);

  REQUIRE(caught_as<parallel::error>(parallel::worker_died{"worker 2 was killed"}) ==
          "worker 2 was killed");
  REQUIRE(caught_as<std::runtime_error>(parallel::timeout_error{"item 3 ran over 5 s"}) ==
          "item 3 ran over 5 s");
  REQUIRE(caught_as<std::exception>(parallel::spawn_error{"no handshake"}) == "no handshake");
  REQUIRE(caught_as<parallel::error>(parallel::remote_error{"bad input"}) == "bad input");
  // A handler for one kind does not catch another.
  REQUIRE(caught_as<parallel::timeout_error>(parallel::worker_died{"died"}).empty());
}

TEST_CASE("errors: what() keeps the message", "[errors]") {
  const std::string message = "worker 2 (pid 4711) was killed by SIGKILL while running item 3";
  REQUIRE(std::string{parallel::error{message}.what()} == message);
  REQUIRE(std::string{parallel::error{"from a literal"}.what()} == "from a literal");
  REQUIRE(std::string{parallel::worker_died{message}.what()} == message);
  REQUIRE(std::string{parallel::timeout_error{message}.what()} == message);
  REQUIRE(std::string{parallel::spawn_error{message}.what()} == message);
  const parallel::error empty{std::string{}};
  REQUIRE(std::string{empty.what()}.empty());
}

TEST_CASE("errors: remote_error carries the type name and the item index", "[errors]") {
  const parallel::remote_error full{"index 9 out of range", "std::out_of_range", 9};
  REQUIRE(std::string{full.what()} == "index 9 out of range");
  REQUIRE(full.type_name() == "std::out_of_range");
  REQUIRE(full.index() == 9);

  // Copies keep everything (exceptions are copied when thrown and rethrown).
  const parallel::remote_error copy = full;
  REQUIRE(copy.type_name() == "std::out_of_range");
  REQUIRE(copy.index() == 9);
  REQUIRE(std::string{copy.what()} == "index 9 out of range");

  try {
    throw parallel::remote_error{"boom", "my::failure", 41};
  } catch (const parallel::error& e) {
    const auto* remote = dynamic_cast<const parallel::remote_error*>(&e);
    REQUIRE(remote != nullptr);
    REQUIRE(remote->type_name() == "my::failure");
    REQUIRE(remote->index() == 41);
  }

  // Not tied to an item: the index says so.
  const parallel::remote_error untied{"lost"};
  REQUIRE(untied.index() == parallel::remote_error::no_index);
  REQUIRE(untied.type_name().empty());
}
