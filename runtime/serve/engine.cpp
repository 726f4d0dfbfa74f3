#include "runtime/serve/engine.h"

#include <algorithm>
#include <cmath>

#include "parallel/communicator.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"

namespace fot::serve {

using Clock = std::chrono::steady_clock;

Request::Finish Request::wait(size_t seen, std::chrono::milliseconds timeout,
                              std::vector<TokenOut>* tokens, std::string* error) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, timeout, [&] { return tokens_.size() > seen || finish_ != Finish::kNone; });
    *tokens = tokens_;
    if (error) *error = error_;
    return finish_;
}

void Request::push(TokenOut token) {
    {
        std::lock_guard<std::mutex> l(mu_);
        tokens_.push_back(std::move(token));
    }
    cv_.notify_all();
}

void Request::finish(Finish f, std::string error) {
    {
        std::lock_guard<std::mutex> l(mu_);
        if (finish_ != Finish::kNone) return;
        finish_ = f;
        error_ = std::move(error);
    }
    cv_.notify_all();
}

namespace {
// A command record of the control plane (multi-rank groups): before each model call, world
// rank 0 broadcasts one; the other ranks (follow()) make the same call on their shards.
enum Op : int64_t { kNew = 1, kFree, kCopy, kStep, kDecode, kStop };
struct Command {
    int64_t op = 0;
    int64_t a = 0;  // a sequence key
    int64_t b = 0;  // kCopy: the source key; kStep: the step's start
    int64_t c = 0;  // kStep: whether the call asks for logits
};
}  // namespace

// A sequence's name on the control plane: when its owner dies, the followers free theirs.
struct Engine::Key {
    Engine* engine = nullptr;
    int64_t id = -1;
    Key(Engine* e, int64_t i) : engine(e), id(i) {}
    Key(Key&& o) noexcept : engine(o.engine), id(o.id) { o.id = -1; }
    Key& operator=(Key&&) = delete;
    ~Key() {
        if (engine && engine->plane_ && id >= 0) {
            std::lock_guard<std::mutex> l(engine->free_mu_);
            engine->pending_free_.push_back(id);
        }
    }
};

void Engine::command(int64_t op, int64_t a, int64_t b, int64_t c) {
    if (!plane_) return;
    std::vector<int64_t> frees;
    {
        std::lock_guard<std::mutex> l(free_mu_);
        frees.swap(pending_free_);
    }
    for (int64_t k : frees) {
        Command f{kFree, k, 0, 0};
        plane_->broadcast_value(f, 0);
    }
    if (op == 0) return;
    Command cmd{op, a, b, c};
    plane_->broadcast_value(cmd, 0);
}

Sequence Engine::new_sequence(int64_t* key) {
    *key = next_key_++;
    command(kNew, *key);
    return s_.model->new_sequence();
}

void Engine::copy_sequence(Sequence& dst, int64_t dst_key, const Sequence& src, int64_t src_key) {
    command(kCopy, dst_key, src_key);
    dst.copy_from(src);
}

int64_t Engine::forward_step(Sequence& seq, int64_t key, const std::vector<int32_t>& ids,
                             int64_t start, const ForwardOptions& fo) {
    if (plane_) {
        command(kStep, key, start, fo.logits != LogitsRows::kNone ? 1 : 0);
        std::vector<int32_t> copy = ids;
        plane_->broadcast_vector(copy, 0);
    }
    return s_.model->forward_step(seq, ids, start, fo);
}

void Engine::decode(const std::vector<Sequence*>& seqs, std::vector<int64_t> keys,
                    std::vector<int32_t> ids, const ForwardOptions& fo) {
    if (plane_) {
        command(kDecode);
        plane_->broadcast_vector(keys, 0);
        plane_->broadcast_vector(ids, 0);
    }
    s_.model->decode(seqs, ids, fo);
}

void follow(Session& s) {
    parallel::Communicator& plane = *s.world_comm;
    std::map<int64_t, Sequence> seqs;
    auto at = [&](int64_t key) -> Sequence& {
        auto it = seqs.find(key);
        FOT_CHECK(it != seqs.end(), "serve control plane: no sequence ", key);
        return it->second;
    };
    auto gather = [&](ForwardOptions& fo, LogitsRows rows) {
        // The leader gathers the vocabulary over tp: the same collective here.
        fo.logits = rows;
        fo.on_logits = [&](int64_t, TensorView local) { (void)s.gather_vocab(local); };
    };
    for (;;) {
        Command cmd;
        plane.broadcast_value(cmd, 0);
        // The leader's calls fail (and are reported) where these fail: the checks run before
        // any collective, on every rank alike, so a failure is dropped here.
        try {
            switch (cmd.op) {
                case kNew:
                    seqs.emplace(cmd.a, s.model->new_sequence());
                    break;
                case kFree:
                    seqs.erase(cmd.a);
                    break;
                case kCopy:
                    at(cmd.a).copy_from(at(cmd.b));
                    break;
                case kStep: {
                    std::vector<int32_t> ids;
                    plane.broadcast_vector(ids, 0);
                    ForwardOptions fo;
                    if (cmd.c) gather(fo, LogitsRows::kLast);
                    s.model->forward_step(at(cmd.a), ids, cmd.b, fo);
                    break;
                }
                case kDecode: {
                    std::vector<int64_t> keys;
                    std::vector<int32_t> ids;
                    plane.broadcast_vector(keys, 0);
                    plane.broadcast_vector(ids, 0);
                    std::vector<Sequence*> ptrs;
                    for (int64_t k : keys) ptrs.push_back(&at(k));
                    ForwardOptions fo;
                    gather(fo, LogitsRows::kAll);
                    s.model->decode(ptrs, ids, fo);
                    break;
                }
                case kStop:
                    return;
                default:
                    FOT_CHECK(false, "serve control plane: unknown command ", cmd.op);
            }
        } catch (const std::exception& e) {
            FOT_LOG(kDebug) << "serve follower: " << e.what();
        }
    }
}

struct Engine::Running {
    std::shared_ptr<Request> req;
    Sequence seq;
    Sampler sampler;
    int32_t last = 0;
    int64_t produced = 0;
    Clock::time_point last_time;
    Key key;
};

struct Engine::DocSession {
    std::string id;
    Sequence seq;
    int64_t prompt_tokens = 0;
    int64_t uses = 0;
    Clock::time_point last_used;
    Key key;
};

// A prompt (run) or a session's document (doc) being prefilled, step by step.
struct Engine::Prefill {
    std::unique_ptr<Running> run;
    std::unique_ptr<DocSession> doc;
    std::vector<int32_t> ids;                 // the document (a prompt is in run->req)
    int64_t next = 0;                         // LongLlama::forward_step's next start
    std::function<void(SessionResult)> done;  // answers create_session
};

Engine::Engine(Session& session, EngineOptions options, Metrics& metrics)
    : s_(session), opt_(options), metrics_(metrics) {
    FOT_CHECK(s_.world.dp() == 1 && s_.world.rank() == 0,
              "the serve engine runs on world rank 0 of a single tp x mp group");
    if (s_.world.world_size() > 1) plane_ = s_.world_comm;
    opt_.max_batch = std::max<int64_t>(
        1, std::min<int64_t>(opt_.max_batch, s_.model_config.max_position_embeddings));
    thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
    stop();
}

std::shared_ptr<Request> Engine::submit(CompletionParams params) {
    auto req = std::make_shared<Request>(std::move(params));
    {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_ || static_cast<int64_t>(waiting_.size()) >= opt_.max_queue) return nullptr;
        waiting_.push_back(req);
    }
    cv_.notify_all();
    return req;
}

void Engine::stop() {
    {
        std::lock_guard<std::mutex> l(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

namespace {
// The chosen token's log softmax(row) and the `top` most likely ids (lowest id first on ties).
TokenOut token_out(const float* row, int64_t n, int32_t tok, int64_t top) {
    float mx = row[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, row[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
    const float log_z = mx + static_cast<float>(std::log(sum));
    TokenOut out{tok, row[tok] - log_z, {}};
    if (top > 0) {
        std::vector<int32_t> ids(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i);
        top = std::min(top, n);
        std::partial_sort(ids.begin(), ids.begin() + top, ids.end(), [&](int32_t a, int32_t b) {
            return row[a] > row[b] || (row[a] == row[b] && a < b);
        });
        for (int64_t i = 0; i < top; ++i) out.top.emplace_back(ids[i], row[ids[i]] - log_z);
    }
    return out;
}
}  // namespace

bool Engine::emit(Running& r, const float* row) {
    const int64_t V = s_.model_config.vocab_size;
    const int32_t tok = r.sampler.sample(row, V);
    const auto now = Clock::now();
    if (r.produced == 0) {
        metrics_.time_to_first_token(std::chrono::duration<double>(now - r.req->arrival).count());
    } else {
        metrics_.per_token_latency(std::chrono::duration<double>(now - r.last_time).count());
    }
    r.last_time = now;
    r.last = tok;
    ++r.produced;
    metrics_.tokens(0, 1);
    r.req->push(token_out(row, V, tok, r.req->params.top_logprobs));
    if (!r.req->params.ignore_eos && tok == s_.model_config.eos_token_id) {
        r.req->finish(Request::Finish::kEos);
        return true;
    }
    if (r.produced >= r.req->params.max_tokens) {
        r.req->finish(Request::Finish::kLength);
        return true;
    }
    return false;
}

std::unique_ptr<Engine::Prefill> Engine::start_prefill(std::shared_ptr<Request> req) {
    if (req->cancel) {
        req->finish(Request::Finish::kCancelled);
        return nullptr;
    }
    auto p = std::make_unique<Prefill>();
    int64_t key = 0;
    Sequence seq = new_sequence(&key);
    p->run = std::make_unique<Running>(
        Running{req, std::move(seq), Sampler(req->params.sampling), 0, 0, {}, Key(this, key)});
    if (!req->params.session.empty()) {
        std::lock_guard<std::mutex> l(sess_mu_);
        auto it = sessions_.find(req->params.session);
        if (it == sessions_.end()) {
            req->finish(Request::Finish::kError, "session '" + req->params.session + "' is gone");
            return nullptr;
        }
        // The question continues from a copy: the session's state stays the document's.
        try {
            copy_sequence(p->run->seq, p->run->key.id, it->second->seq, it->second->key.id);
        } catch (const std::exception& e) {
            req->finish(Request::Finish::kError, e.what());
            return nullptr;
        }
        ++it->second->uses;
        it->second->last_used = Clock::now();
    }
    return p;
}

void Engine::advance_prefill() {
    Prefill& p = *prefilling_;
    Sequence& seq = p.run ? p.run->seq : p.doc->seq;
    const int64_t key = p.run ? p.run->key.id : p.doc->key.id;
    const std::vector<int32_t>& ids = p.run ? p.run->req->params.prompt : p.ids;
    if (p.run && p.run->req->cancel) {
        p.run->req->finish(Request::Finish::kCancelled);
        prefilling_.reset();
        return;
    }
    std::vector<float> row;
    ForwardOptions fo;
    if (p.run) {
        fo.logits = LogitsRows::kLast;  // delivered by the last step only
        fo.on_logits = [&](int64_t, TensorView local) { row = s_.gather_vocab(local); };
    }
    try {
        p.next = forward_step(seq, key, ids, p.next, fo);
    } catch (const std::exception& e) {
        // Foreseeable failures (memory capacity) throw at the first step, before the
        // sequence changes; the request fails alone and the engine keeps serving.
        if (p.run) {
            p.run->req->finish(Request::Finish::kError, e.what());
        } else {
            p.done({500, e.what(), {}});
        }
        prefilling_.reset();
        return;
    }
    metrics_.prefill_step();
    if (p.next < static_cast<int64_t>(ids.size())) return;
    metrics_.prefill();
    metrics_.tokens(static_cast<int64_t>(ids.size()), 0);
    if (p.run) {
        if (!emit(*p.run, row.data())) running_.push_back(std::move(p.run));
    } else {
        SessionResult out;
        {
            std::lock_guard<std::mutex> sl(sess_mu_);
            p.doc->id = "sess-" + std::to_string(next_session_++);
            p.doc->prompt_tokens = static_cast<int64_t>(ids.size());
            p.doc->last_used = Clock::now();
            out.info = info_of(*p.doc);
            sessions_[p.doc->id] = std::move(p.doc);
        }
        p.done(std::move(out));
    }
    prefilling_.reset();
}

void Engine::decode_step(bool during_prefill) {
    // Cancelled requests leave before the step: their sequences are freed here.
    std::erase_if(running_, [](const std::unique_ptr<Running>& r) {
        if (!r->req->cancel) return false;
        r->req->finish(Request::Finish::kCancelled);
        return true;
    });
    if (running_.empty()) return;
    const size_t B = std::min<size_t>(running_.size(), static_cast<size_t>(opt_.max_batch));
    std::vector<Sequence*> seqs;
    std::vector<int64_t> keys;
    std::vector<int32_t> ids;
    for (size_t b = 0; b < B; ++b) {
        seqs.push_back(&running_[b]->seq);
        keys.push_back(running_[b]->key.id);
        ids.push_back(running_[b]->last);
    }
    std::vector<float> rows;
    ForwardOptions fo;
    fo.logits = LogitsRows::kAll;
    fo.on_logits = [&](int64_t, TensorView local) { rows = s_.gather_vocab(local); };
    try {
        decode(seqs, std::move(keys), std::move(ids), fo);
    } catch (const std::exception& e) {
        // A memory overflow of one sequence is checked before the step changes anything:
        // fail the batch's requests, keep the server.
        for (size_t b = 0; b < B; ++b) running_[b]->req->finish(Request::Finish::kError, e.what());
        running_.erase(running_.begin(), running_.begin() + static_cast<std::ptrdiff_t>(B));
        return;
    }
    metrics_.decode_step(static_cast<int64_t>(B), during_prefill);
    const int64_t V = s_.model_config.vocab_size;
    std::vector<bool> done(B);
    for (size_t b = 0; b < B; ++b) done[b] = emit(*running_[b], rows.data() + b * V);
    // Rotate the batch so that sequences beyond max_batch get their turn.
    std::vector<std::unique_ptr<Running>> next;
    for (size_t b = B; b < running_.size(); ++b) next.push_back(std::move(running_[b]));
    for (size_t b = 0; b < B; ++b)
        if (!done[b]) next.push_back(std::move(running_[b]));
    running_ = std::move(next);
}

SessionInfo Engine::info_of(const DocSession& d) const {
    SessionInfo i;
    i.id = d.id;
    i.prompt_tokens = d.prompt_tokens;
    i.memory_tokens = d.seq.memory_tokens();
    i.bytes = d.seq.allocated_bytes();
    i.prefills = 1;
    i.uses = d.uses;
    i.idle_seconds = std::chrono::duration<double>(Clock::now() - d.last_used).count();
    return i;
}

SessionResult Engine::create_session(std::vector<int32_t> document) {
    SessionResult res;
    std::mutex done_mu;
    std::condition_variable done_cv;
    bool done = false;
    auto answer = [&](SessionResult out) {
        std::lock_guard<std::mutex> dl(done_mu);
        res = std::move(out);
        done = true;
        done_cv.notify_all();
    };
    {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_) return {503, "the server is stopping", {}};
        tasks_.push_back([&] {
            // Engine thread. The caps are checked here, where creations are serialised; the
            // documents still being prefilled count.
            int64_t count = static_cast<int64_t>(doc_queue_.size());
            int64_t tokens = 0;
            for (const auto& p : doc_queue_) tokens += static_cast<int64_t>(p->ids.size());
            if (prefilling_ && prefilling_->doc) {
                ++count;
                tokens += static_cast<int64_t>(prefilling_->ids.size());
            }
            {
                std::lock_guard<std::mutex> sl(sess_mu_);
                count += static_cast<int64_t>(sessions_.size());
                for (const auto& [id, d] : sessions_) tokens += d->prompt_tokens;
            }
            if (count >= opt_.max_sessions) {
                answer({429,
                        "too many sessions (" + std::to_string(opt_.max_sessions) +
                            "): delete one first",
                        {}});
                return;
            }
            if (tokens + static_cast<int64_t>(document.size()) > opt_.max_session_tokens) {
                answer({429,
                        "the sessions would hold more than " +
                            std::to_string(opt_.max_session_tokens) + " tokens",
                        {}});
                return;
            }
            // Prefilled window by window between decode steps, like a prompt.
            auto p = std::make_unique<Prefill>();
            int64_t key = 0;
            Sequence seq = new_sequence(&key);
            p->doc = std::make_unique<DocSession>(
                DocSession{"", std::move(seq), 0, 0, Clock::now(), Key(this, key)});
            p->ids = std::move(document);
            p->done = answer;
            doc_queue_.push_back(std::move(p));
        });
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> dl(done_mu);
    done_cv.wait(dl, [&] { return done; });
    return res;
}

std::optional<SessionInfo> Engine::session(const std::string& id) {
    std::lock_guard<std::mutex> l(sess_mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return std::nullopt;
    return info_of(*it->second);
}

bool Engine::delete_session(const std::string& id) {
    std::lock_guard<std::mutex> l(sess_mu_);
    return sessions_.erase(id) > 0;
}

void Engine::expire_sessions() {
    std::lock_guard<std::mutex> l(sess_mu_);
    const auto now = Clock::now();
    std::erase_if(sessions_, [&](const auto& kv) {
        return std::chrono::duration<double>(now - kv.second->last_used).count() >
               opt_.session_idle_timeout_s;
    });
    int64_t mem = 0;
    for (const auto& [id, d] : sessions_) mem += d->seq.memory_tokens();
    metrics_.set_sessions(static_cast<int64_t>(sessions_.size()), mem);
}

void Engine::loop() {
    for (;;) {
        std::deque<std::function<void()>> tasks;
        {
            std::unique_lock<std::mutex> l(mu_);
            // Wakes at least every second to expire idle sessions.
            cv_.wait_for(l, std::chrono::seconds(1), [&] {
                return stopping_ || !waiting_.empty() || !running_.empty() || !tasks_.empty() ||
                       prefilling_ || !doc_queue_.empty();
            });
            tasks.swap(tasks_);
            if (stopping_ && waiting_.empty() && running_.empty() && tasks.empty() &&
                !prefilling_ && doc_queue_.empty())
                break;
        }
        for (auto& t : tasks) t();
        expire_sessions();
        try {
            // One prefill at a time, session documents first; it advances one window per
            // iteration, so the running sequences get a decode step between its windows.
            if (!prefilling_ && !doc_queue_.empty()) {
                prefilling_ = std::move(doc_queue_.front());
                doc_queue_.pop_front();
            }
            if (!prefilling_) {
                std::shared_ptr<Request> next;
                {
                    std::lock_guard<std::mutex> l(mu_);
                    if (!waiting_.empty() &&
                        static_cast<int64_t>(running_.size()) < opt_.max_batch) {
                        next = waiting_.front();
                        waiting_.pop_front();
                    }
                }
                if (next) prefilling_ = start_prefill(std::move(next));
            }
            if (prefilling_) advance_prefill();
            decode_step(prefilling_ != nullptr);
        } catch (const std::exception& e) {
            FOT_LOG(kError) << "serve engine: " << e.what();
        }
        int64_t mem = 0, bytes = 0;
        for (const auto& r : running_) {
            mem += r->seq.memory_tokens();
            bytes += r->seq.allocated_bytes();
        }
        {
            std::lock_guard<std::mutex> l(mu_);
            metrics_.set_state(static_cast<int64_t>(waiting_.size()),
                               static_cast<int64_t>(running_.size()), mem, bytes);
        }
        try {
            command(0);  // frees of finished requests and deleted sessions
        } catch (const std::exception& e) {
            FOT_LOG(kError) << "serve engine: " << e.what();
        }
    }
    if (plane_) {
        // The sessions go with the engine; then the followers return.
        {
            std::lock_guard<std::mutex> l(sess_mu_);
            sessions_.clear();
        }
        command(kStop);
    }
}

}  // namespace fot::serve
