// The table of retrievers by name (retriever.h). A new retriever adds its maker here.
#include <map>

#include "runtime/core/status.h"
#include "runtime/memory/retriever.h"

namespace fot {

std::unique_ptr<MemoryRetriever> make_dense_retriever(const RetrieverSpec&, Backend&,
                                                      parallel::Communicator&, RetrieverShape);
std::unique_ptr<MemoryRetriever> make_topk_retriever(const RetrieverSpec&, Backend&,
                                                     parallel::Communicator&, RetrieverShape);

namespace {
std::map<std::string, RetrieverFactory>& registry() {
    static std::map<std::string, RetrieverFactory> r = {
        {"dense", make_dense_retriever},
        {"topk", make_topk_retriever},
    };
    return r;
}
}  // namespace

void register_memory_retriever(const std::string& name, RetrieverFactory factory) {
    FOT_CHECK(!name.empty() && factory, "a retriever needs a name and a factory");
    registry()[name] = std::move(factory);
}

std::vector<std::string> memory_retriever_names() {
    std::vector<std::string> names;
    for (const auto& [name, f] : registry()) names.push_back(name);
    return names;
}

std::unique_ptr<MemoryRetriever> make_memory_retriever(const RetrieverSpec& spec, Backend& backend,
                                                       parallel::Communicator& mp,
                                                       RetrieverShape shape) {
    const auto it = registry().find(spec.name);
    if (it == registry().end()) {
        std::string known;
        for (const auto& n : memory_retriever_names()) known += (known.empty() ? "" : ", ") + n;
        FOT_THROW("unknown memory retriever '", spec.name, "' (known: ", known, ")");
    }
    return it->second(spec, backend, mp, shape);
}

}  // namespace fot
