// cpp_host: driving dist-worker from C++.
//
// A small RAII owner holds the DistWorker and shuts it down in its
// destructor, so every exit path (return or exception) joins the library's
// threads. Two SUB workers run on pool threads, two NEXT_LEVEL workers in
// child processes. The host dispatches:
//   1. a group task (group_size 2): one DAG node that runs on both SUB
//      workers at once, each member with its own args (its half of a vector);
//   2. a small DAG, produce -> two partial sums -> reduce, ordered by the
//      engine from the tensor tags; the intermediates live in the engine's
//      MAP_SHARED heap (OUTPUT with data 0, dist_worker_alloc), so children
//      and threads see them at the same address; an RAII Scope owns them;
//   3. a task whose callable fails on purpose, to show how a failure comes
//      back: DIST_ERR_TASK_FAILED plus a message naming worker, callable, code.
#include <dist_worker.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t kFill = 1;  // SUB callable ids
constexpr std::uint64_t kFail = 2;
constexpr std::uint64_t kReduce = 3;
constexpr std::uint64_t kProduce = 0xda90001;  // NEXT_LEVEL handles
constexpr std::uint64_t kPartial = 0xda90002;
constexpr std::int32_t kFailCode = 42;
constexpr std::uint32_t kN = 1000;  // elements the DAG sums

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
    int spawn(DistWorkerType type, DistTaskFn fn, void *user) {
        std::fflush(stdout);  // the child inherits no buffered output
        std::int32_t pid = 0;
        check(dist_worker_spawn(w_, type, fn, user, &pid), "dist_worker_spawn");
        return pid;
    }
    // Heap memory owned by the current scope.
    DistTensor alloc(std::initializer_list<std::uint32_t> shape, DistDataType dtype) {
        std::vector<std::uint32_t> dims(shape);
        DistTensor t{};
        check(dist_worker_alloc(w_, dims.data(), static_cast<std::uint32_t>(dims.size()), dtype, &t), "dist_worker_alloc");
        return t;
    }
    // Tensor `index` of `member` as dispatched (the heap address of an OUTPUT with data 0).
    DistTensor tensor(DistTaskId id, std::uint32_t member, std::uint32_t index) {
        DistTensor t{};
        check(dist_worker_task_tensor(w_, id, member, index, &t), "dist_worker_task_tensor");
        return t;
    }
    DistWorker *get() const { return w_; }
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

// RAII scope: heap memory of the tasks and allocations made while it lives is
// handed back once it ends and nothing depends on it any more.
class Scope {
public:
    explicit Scope(Worker &w) : w_(w) { check(dist_worker_scope_begin(w_.get()), "dist_worker_scope_begin"); }
    ~Scope() { dist_worker_scope_end(w_.get()); }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;

private:
    Worker &w_;
};

std::uint64_t *u64s(const DistTensor &t) { return reinterpret_cast<std::uint64_t *>(static_cast<std::uintptr_t>(t.data)); }

// The DAG's steps. kProduce: out[i] = i + 1. kPartial: out[0] = sum of
// in[first .. first + count). kReduce: out[0] = a[0] + b[0].
std::int32_t dag_step(void *, std::uint64_t id, const DistTaskView *args, const DistCallConfig *) {
    const DistTensor *t = args->tensors;
    if (id == kProduce && args->tensor_count == 1) {
        for (std::uint32_t i = 0; i < t[0].shapes[0]; i++) u64s(t[0])[i] = i + 1;
    } else if (id == kPartial && args->tensor_count == 2 && args->scalar_count == 2) {
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0; i < args->scalars[1]; i++) sum += u64s(t[0])[args->scalars[0] + i];
        u64s(t[1])[0] = sum;
    } else if (id == kReduce && args->tensor_count == 3) {
        u64s(t[2])[0] = u64s(t[0])[0] + u64s(t[1])[0];
    } else {
        return 3;
    }
    return 0;
}

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
    if (id == kReduce) return dag_step(nullptr, id, args, nullptr);
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
    for (int k = 0; k < 2; k++) std::printf("spawned next-level child %d as pid %d\n", k, worker.spawn(DIST_WORKER_NEXT_LEVEL, dag_step, nullptr));

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

    // 2. A DAG: produce (child) -> partial sums (children) -> reduce (thread).
    {
        Scope scope(worker);
        const DistTensorArgType in = DIST_ARG_INPUT, out = DIST_ARG_OUTPUT, existing = DIST_ARG_OUTPUT_EXISTING;
        DistTensor v{};  // data 0 + OUTPUT: the engine allocates it
        v.shapes[0] = kN;
        v.ndims = 1;
        v.dtype = DIST_UINT64;
        DistTaskId produce = worker.dispatch(DIST_WORKER_NEXT_LEVEL, kProduce, {DistTaskArgs{&v, &out, 1, nullptr, 0}});
        v = worker.tensor(produce, 0, 0);
        DistTensor part[2] = {worker.alloc({1}, DIST_UINT64), worker.alloc({1}, DIST_UINT64)};
        for (std::uint64_t k = 0; k < 2; k++) {  // each reads v (waits for produce), writes its partial
            const DistTensor t[2] = {v, part[k]};
            const DistTensorArgType tags[2] = {in, existing};
            const std::uint64_t range[2] = {k * kN / 2, kN / 2};
            worker.dispatch(DIST_WORKER_NEXT_LEVEL, kPartial, {DistTaskArgs{t, tags, 2, range, 2}});
        }
        DistTensor r[3] = {part[0], part[1], v};  // the result: another engine-allocated OUTPUT
        r[2].data = 0;
        r[2].shapes[0] = 1;
        const DistTensorArgType rtags[3] = {in, in, out};
        DistTaskId reduce = worker.dispatch(DIST_WORKER_SUB, kReduce, {DistTaskArgs{r, rtags, 3, nullptr, 0}});
        check(worker.wait(reduce), "reduce");
        const unsigned long long sum = u64s(worker.tensor(reduce, 0, 2))[0], want = kN * (kN + 1ull) / 2;
        std::printf("dag: produce -> 2 partial sums -> reduce = %llu (expected %llu)\n", sum, want);
        if (sum != want) throw std::runtime_error("the DAG computed a wrong sum");
    }

    // 3. A failing callable: its status and message come back from wait.
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
