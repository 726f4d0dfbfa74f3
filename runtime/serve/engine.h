// Engine: the one thread that runs the model for the server.
//
// Requests queue; the engine loop alternates one prefill (the oldest waiting request, its
// whole prompt in one model call) with one batched decode step that advances every running
// sequence by one token (LongLlama::decode), so a new request joins the batch without
// stopping the others, and running requests are not starved by a queue of prompts.
// Each request gets its own Sequence and its own seeded Sampler, so its tokens are those
// `fotrt generate` gives for the same prompt and options (decode equals one-token forwards
// up to the GEMMs' summation order).
//
// The HTTP threads submit() a request and read its tokens from the returned Request as they
// come (Request::wait); setting Request::cancel (client gone, stop string reached) drops the
// sequence at the next step. LongLlama is not thread-safe: only the engine thread touches the
// model. Single process: the session's group must be one rank.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/jobs/session.h"
#include "runtime/model/sampler.h"
#include "runtime/serve/metrics.h"

namespace fot::serve {

struct CompletionParams {
    std::vector<int32_t> prompt;
    int64_t max_tokens = 16;
    SamplingParams sampling;
    bool ignore_eos = false;
    int64_t top_logprobs = 0;  // alternatives reported per token (with their log-probabilities)
};

// One generated token with its log-probability and the most likely alternatives.
struct TokenOut {
    int32_t id = 0;
    float logprob = 0.0f;
    std::vector<std::pair<int32_t, float>> top;  // params.top_logprobs entries, best first
};

// One request's output, written by the engine thread, read by one HTTP thread.
class Request {
  public:
    enum class Finish { kNone, kLength, kEos, kCancelled, kError };

    explicit Request(CompletionParams p) : params(std::move(p)) {}
    const CompletionParams params;
    std::atomic<bool> cancel{false};
    const std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();

    // Blocks until more than `seen` tokens exist, the request finished, or `timeout` passed.
    // Returns the tokens so far and the finish state (kNone while running).
    Finish wait(size_t seen, std::chrono::milliseconds timeout, std::vector<TokenOut>* tokens,
                std::string* error);

    // Engine side.
    void push(TokenOut token);
    void finish(Finish f, std::string error = "");

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<TokenOut> tokens_;
    Finish finish_ = Finish::kNone;
    std::string error_;
};

struct EngineOptions {
    int64_t max_batch = 32;   // most sequences in one decode step (at most the window W)
    int64_t max_queue = 256;  // waiting requests beyond which submit() refuses
};

class Engine {
  public:
    Engine(Session& session, EngineOptions options, Metrics& metrics);
    ~Engine();  // stop(): drains, then joins

    // Null when the queue is full or the engine is stopping.
    std::shared_ptr<Request> submit(CompletionParams params);
    // Finishes every queued and running request, then ends the thread. Idempotent.
    void stop();

  private:
    struct Running;
    void loop();
    // Samples row `row` for `r`; pushes the token; returns true when `r` is finished.
    bool emit(Running& r, const float* row);
    void prefill(std::shared_ptr<Request> req);
    void decode_step();

    Session& s_;
    EngineOptions opt_;
    Metrics& metrics_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Request>> waiting_;
    bool stopping_ = false;
    std::vector<std::unique_ptr<Running>> running_;  // engine thread only
    std::thread thread_;
};

}  // namespace fot::serve
