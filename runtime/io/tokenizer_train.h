// Training a small sentencepiece model (LLaMA conventions: unk 0, bos 1, eos 2, no pad, digits
// split into single pieces, no byte fallback). Deterministic: one thread and a fixed input
// give the same model bytes. Kept apart from tokenizer.cpp so that only what trains a
// tokenizer (fotrt make-demo-model) links libsentencepiece_train.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fot {

// A BPE model of at most `vocab_size` pieces trained on `sentences`; returns the serialized
// model (the bytes of a tokenizer.model). Throws fot::Error with sentencepiece's message.
std::string train_bpe_tokenizer(const std::vector<std::string>& sentences, int64_t vocab_size);

}  // namespace fot
