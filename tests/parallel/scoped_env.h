// ScopedEnv: sets (or unsets, with nullptr) an environment variable for a scope and restores
// its previous value, so tests of environment-driven behaviour do not leak into each other.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace fot::parallel::testing {

class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            setenv(name, value, 1);
        else
            unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_)
            setenv(name_, old_->c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

}  // namespace fot::parallel::testing
