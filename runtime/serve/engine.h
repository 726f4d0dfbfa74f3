// Engine: the one thread that runs the model for the server.
//
// Requests queue; each iteration of the engine loop runs one step of the prefill under way
// (one window of the oldest waiting prompt or session document: LongLlama::forward_step),
// then one batched decode step that advances every running sequence by one token
// (LongLlama::decode). A new request joins the batch without stopping the others, and a
// long prompt delays the running requests by one window per token, not by its whole
// prefill.
// Each request gets its own Sequence and its own seeded Sampler, so its tokens are those
// `fotrt generate` gives for the same prompt and options (decode equals one-token forwards
// up to the GEMMs' summation order).
//
// The HTTP threads submit() a request and read its tokens from the returned Request as they
// come (Request::wait); setting Request::cancel (client gone, stop string reached) drops the
// sequence at the next step. LongLlama is not thread-safe: only the engine thread touches the
// model. Under mpirun (one tp x mp group, no dp) the engine runs on world rank 0 and
// announces every model call (new / copy / free sequence, prefill step, decode step) as a
// small command record broadcast over the world communicator; the other ranks run follow()
// and make the same collective calls in the same order.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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
    // A memory session to continue from ("" = none): the request's sequence starts as a copy
    // of the session's document state and `prompt` (the question) is fed after it.
    std::string session;
};

// A memory session: a document prefilled once and kept, so that many completions continue
// from its state without recomputing it (and without changing it: each forks a copy).
struct SessionInfo {
    std::string id;
    int64_t prompt_tokens = 0;  // the document's length
    int64_t memory_tokens = 0;  // its FoT memory tokens per memory layer
    int64_t bytes = 0;          // device bytes its state holds
    int64_t prefills = 0;       // times the document was run through the model (1)
    int64_t uses = 0;           // completions that continued from it
    double idle_seconds = 0.0;
};

// What create_session() answers: the session, or an HTTP status and message.
struct SessionResult {
    int status = 200;
    std::string error;
    SessionInfo info;
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
    int64_t max_batch = 32;     // most sequences in one decode step (at most the window W)
    int64_t max_queue = 256;    // waiting requests beyond which submit() refuses
    int64_t max_sessions = 16;  // memory sessions held at once
    int64_t max_session_tokens = 1 << 20;  // document tokens of all sessions together
    double session_idle_timeout_s = 600;   // a session unused this long is dropped
};

class Engine {
  public:
    Engine(Session& session, EngineOptions options, Metrics& metrics);
    ~Engine();  // stop(): drains, then joins

    // Null when the queue is full or the engine is stopping.
    std::shared_ptr<Request> submit(CompletionParams params);
    // Finishes every queued and running request, then ends the thread. Idempotent.
    void stop();

    // Prefills `document` into a new session on the engine thread (between decode steps);
    // blocks until done. 429 when the session caps would be exceeded, 500 when the model
    // call fails.
    SessionResult create_session(std::vector<int32_t> document);
    std::optional<SessionInfo> session(const std::string& id);
    bool delete_session(const std::string& id);

  private:
    struct Running;
    struct DocSession;
    struct Prefill;
    struct Key;
    // Model calls, each announced first on the control plane (when the group has several
    // ranks) so that follow() makes the same call on the other ranks.
    void command(int64_t op, int64_t a = 0, int64_t b = 0, int64_t c = 0);
    Sequence new_sequence(int64_t* key);
    void copy_sequence(Sequence& dst, int64_t dst_key, const Sequence& src, int64_t src_key);
    int64_t forward_step(Sequence& seq, int64_t key, const std::vector<int32_t>& ids, int64_t start,
                         const ForwardOptions& fo);
    void decode(const std::vector<Sequence*>& seqs, std::vector<int64_t> keys,
                std::vector<int32_t> ids, const ForwardOptions& fo);
    void loop();
    void expire_sessions();
    SessionInfo info_of(const DocSession& d) const;
    // Samples row `row` for `r`; pushes the token; returns true when `r` is finished.
    bool emit(Running& r, const float* row);
    // A prefill for `req` (null when it finished at once: cancelled, session gone).
    std::unique_ptr<Prefill> start_prefill(std::shared_ptr<Request> req);
    // Runs the next step (one window) of prefilling_; at its end the request joins the
    // decode batch (or the session is registered) and prefilling_ is cleared.
    void advance_prefill();
    void decode_step(bool during_prefill);

    Session& s_;
    parallel::Communicator* plane_ = nullptr;  // world communicator when several ranks
    int64_t next_key_ = 0;                     // engine thread only
    std::mutex free_mu_;                       // sequences dropped, to free on the followers
    std::vector<int64_t> pending_free_;
    EngineOptions opt_;
    Metrics& metrics_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Request>> waiting_;
    bool stopping_ = false;
    std::vector<std::unique_ptr<Running>> running_;   // engine thread only
    std::unique_ptr<Prefill> prefilling_;             // engine thread only: the prefill under way
    std::deque<std::unique_ptr<Prefill>> doc_queue_;  // engine thread only: session documents
    std::deque<std::function<void()>> tasks_;         // run on the engine thread (under mu_)
    // Sessions: the map and their counters under sess_mu_; their sequences are read by the
    // engine thread (while holding sess_mu_) and freed by whoever erases them.
    std::mutex sess_mu_;
    std::map<std::string, std::unique_ptr<DocSession>> sessions_;
    int64_t next_session_ = 0;
    std::thread thread_;
};

// The other ranks of the group: makes the model calls that the engine on world rank 0
// announces on the control plane, in the same order, until that engine stops. Collective
// with Engine over the world communicator.
void follow(Session& session);

}  // namespace fot::serve
