#include "runtime/jobs/job_config.h"

#include <sstream>
#include <vector>

#include "runtime/core/status.h"

namespace fot {

namespace {

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    const size_t e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

// A plain YAML scalar: unquoted (a trailing " # comment" removed), 'single' ('' escapes ')
// or "double" (\" and \\ escapes). Returns false when it is not one.
bool scalar_value(const std::string& raw, std::string* out) {
    std::string v = trim(raw);
    if (v.empty()) return false;
    if (v[0] == '"' || v[0] == '\'') {
        const char q = v[0];
        std::string s;
        size_t i = 1;
        for (; i < v.size(); ++i) {
            const char c = v[i];
            if (q == '\'' && c == '\'' && i + 1 < v.size() && v[i + 1] == '\'') {
                s += '\'';
                ++i;
            } else if (q == '"' && c == '\\' && i + 1 < v.size() &&
                       (v[i + 1] == '"' || v[i + 1] == '\\')) {
                s += v[i + 1];
                ++i;
            } else if (c == q) {
                break;
            } else {
                s += c;
            }
        }
        if (i >= v.size()) return false;  // unterminated
        const std::string rest = trim(v.substr(i + 1));
        if (!rest.empty() && rest[0] != '#') return false;
        *out = s;
        return true;
    }
    const size_t hash = v.find(" #");
    if (hash != std::string::npos) v = trim(v.substr(0, hash));
    if (v.empty() || v[0] == '[' || v[0] == '{' || v[0] == '&' || v[0] == '*' || v[0] == '|' ||
        v[0] == '>' || v[0] == '!') {
        return false;
    }
    *out = v;
    return true;
}

}  // namespace

JobYaml split_job_yaml(const std::string& text, const std::string& origin,
                       const std::set<std::string>& job_keys) {
    JobYaml out;
    std::vector<std::string> lines;
    {
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line)) lines.push_back(line);
    }
    std::ostringstream run;
    bool in_job_key = false;  // inside a job key's (forbidden) nested block
    std::string current;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        const int line_no = static_cast<int>(i) + 1;
        const bool top_level =
            !line.empty() && line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '-';
        const bool blank = trim(line).empty() || trim(line)[0] == '#';
        if (in_job_key && !top_level && !blank) {
            FOT_THROW(origin, ":", line_no, ": ", current,
                      " must be a plain value on its own line (e.g. '", current,
                      ": value'), not a list or a nested block");
        }
        if (top_level) in_job_key = false;
        const size_t colon = line.find(':');
        const std::string key =
            top_level && colon != std::string::npos ? trim(line.substr(0, colon)) : std::string();
        if (key.empty() || job_keys.count(key) == 0) {
            run << line << "\n";
            continue;
        }
        auto [it, fresh] = out.lines.emplace(key, line_no);
        FOT_CHECK(fresh, origin, ":", line_no, ": ", key, " is given twice (first at line ",
                  it->second, ")");
        std::string value;
        if (trim(line.substr(colon + 1)).empty()) {
            in_job_key = true;  // an error if anything indented follows; else an empty value
            current = key;
            out.values[key] = "";
        } else if (scalar_value(line.substr(colon + 1), &value)) {
            out.values[key] = value;
        } else {
            FOT_THROW(origin, ":", line_no, ": ", key, " must be a plain value (e.g. '", key,
                      ": value'), got '", trim(line.substr(colon + 1)), "'");
        }
        run << "\n";
    }
    for (const auto& [key, value] : out.values) {
        FOT_CHECK(!value.empty(), origin, ":", out.lines[key], ": ", key, " has no value");
    }
    out.run_yaml = run.str();
    return out;
}

}  // namespace fot
