// cpp_host: driving dist-worker from C++.
//
// A small RAII owner holds the DistWorker and shuts it down in its
// destructor, so every exit path (return or exception) joins the library's
// threads. Two SUB workers run on pool threads. The host dispatches:
//   1. a group task (group_size 2): one DAG node that runs on both workers at
//      once, each member with its own args (its half of a vector to fill);
//   2. a task whose callable fails on purpose, to show how a failure comes
//      back: DIST_ERR_TASK_FAILED plus a message naming worker, callable, code.
#include <dist_worker.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t kFill = 1;  // SUB callable ids
constexpr std::uint64_t kFail = 2;
constexpr std::int32_t kFailCode = 42;

// Thrown by check() with the status name and the library's message.
struct Error : std::runtime_error {
    explicit Error(const std::string &what, DistStatus s)
        : std::runtime_error(what + ": " + dist_status_str(s) + " (" + dist_last_error_message() + ")") {}
};

void check(DistStatus s, const char *what) {
    if (s != DIST_OK) throw Error(what, s);
}

// Owns one DistWorker; move-only. The destructor shuts it down.
class Worker {
public:
    Worker() { check(dist_worker_create(nullptr, &w_), "dist_worker_create"); }
    ~Worker() { dist_worker_shutdown(w_); }  // NULL (after shutdown()) is a no-op
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;
    Worker(Worker &&other) noexcept : w_(other.w_) { other.w_ = nullptr; }

    void add_thread(DistWorkerType type, DistTaskFn fn, void *user) {
        check(dist_worker_add_thread(w_, type, fn, user), "dist_worker_add_thread");
    }
    // Dispatches one task whose members' args are `members` (group_size = their count).
    DistTaskId dispatch(DistWorkerType type, std::uint64_t callable, const std::vector<DistTaskArgs> &members) {
        DistTask task{type, callable, DistCallConfig{24, 3, false, false}, members.data(),
                      static_cast<std::uint32_t>(members.size())};
        DistTaskId id = 0;
        check(dist_worker_dispatch(w_, &task, &id), "dist_worker_dispatch");
        return id;
    }
    DistStatus wait(DistTaskId id) { return dist_worker_wait(w_, id); }
    DistStatus drain() { return dist_worker_drain(w_); }
    // Explicit shutdown, to see its status; the destructor then does nothing.
    DistStatus shutdown() {
        DistWorker *w = w_;
        w_ = nullptr;
        return dist_worker_shutdown(w);
    }

private:
    DistWorker *w_ = nullptr;
};

// One per pool thread, passed as `user`.
struct SubWorker {
    SubWorker(int i) : index(i) {}
    int index;
    std::atomic<int> ran{0};
};

// kFill: writes scalars[1] into each element of its int32 output tensor.
// kFail: reports kFailCode.
std::int32_t callable(void *user, std::uint64_t id, const DistTaskView *args, const DistCallConfig *) {
    auto *self = static_cast<SubWorker *>(user);
    self->ran++;
    if (id == kFail) return kFailCode;
    if (id != kFill || args->tensor_count != 1 || args->scalar_count != 2) return 1;
    const DistTensor &out = args->tensors[0];
    if (out.ndims != 1 || out.dtype != DIST_INT32) return 2;
    auto *data = reinterpret_cast<std::int32_t *>(static_cast<std::uintptr_t>(out.data));
    for (std::uint32_t i = 0; i < out.shapes[0]; i++) data[i] = static_cast<std::int32_t>(args->scalars[1]);
    return 0;
}

int run() {
    SubWorker subs[2]{{0}, {1}};
    Worker worker;
    for (SubWorker &s : subs) worker.add_thread(DIST_WORKER_SUB, callable, &s);

    // 1. Group task: member m fills half m of `values` with m + 1.
    std::vector<std::int32_t> values(64, 0);
    const std::uint32_t half = static_cast<std::uint32_t>(values.size() / 2);
    std::vector<DistTensor> tensors;
    std::vector<std::vector<std::uint64_t>> scalars;
    for (std::uint32_t m = 0; m < 2; m++) {
        DistTensor t{};
        t.data = reinterpret_cast<std::uintptr_t>(values.data() + m * half);
        t.shapes[0] = half;
        t.ndims = 1;
        t.dtype = DIST_INT32;
        tensors.push_back(t);
        scalars.push_back({m, m + 1});
    }
    const DistTensorArgType out_tag = DIST_ARG_OUTPUT_EXISTING;
    std::vector<DistTaskArgs> members;
    for (std::uint32_t m = 0; m < 2; m++)
        members.push_back(DistTaskArgs{&tensors[m], &out_tag, 1, scalars[m].data(), 2});
    DistStatus s = worker.wait(worker.dispatch(DIST_WORKER_SUB, kFill, members));
    std::printf("group task (2 members): %s\n", dist_status_str(s));
    check(s, "group task");
    for (std::size_t i = 0; i < values.size(); i++)
        if (values[i] != (i < half ? 1 : 2)) throw std::runtime_error("group task: wrong value at " + std::to_string(i));
    std::printf("sub workers ran %d and %d members\n", subs[0].ran.load(), subs[1].ran.load());
    if (subs[0].ran != 1 || subs[1].ran != 1) throw std::runtime_error("group members did not run on both workers");

    // 2. A failing callable: its status and message come back from wait.
    s = worker.wait(worker.dispatch(DIST_WORKER_SUB, kFail, {}));
    std::printf("failing task: %s: %s\n", dist_status_str(s), dist_last_error_message());
    if (s != DIST_ERR_TASK_FAILED) throw std::runtime_error("expected DIST_ERR_TASK_FAILED");
    if (std::string(dist_last_error_message()).find(std::to_string(kFailCode)) == std::string::npos)
        throw std::runtime_error("the message does not name the error code");

    // drain reports the first failure since the last drain; then shutdown is clean.
    s = worker.drain();
    std::printf("drain: %s\n", dist_status_str(s));
    if (s != DIST_ERR_TASK_FAILED) throw std::runtime_error("expected drain to report the failure");
    check(worker.shutdown(), "dist_worker_shutdown");
    std::printf("ok\n");
    return 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "cpp_host: %s\n", e.what());
        return 1;
    }
}
