// cpp_host: driving dist-worker from C++, through dist_worker.hpp.
//
// dist::Worker owns the DistWorker and the callables registered on it (here
// lambdas) and shuts it down in its destructor, so every exit path (return
// or exception) joins the library's threads. Two SUB workers run on pool
// threads, two NEXT_LEVEL workers in child processes. The host dispatches:
//   1. a group task (group_size 2): one DAG node that runs on both SUB
//      workers at once, each member with its own args (its half of a vector);
//   2. a small DAG, produce -> two partial sums -> reduce, ordered by the
//      engine from the tensor tags; the intermediates live in the engine's
//      MAP_SHARED heap (OUTPUT with data 0, alloc), so children and threads
//      see them at the same address; a dist::Scope owns them;
//   3. a task whose callable fails on purpose (it throws), to show how a
//      failure comes back: DIST_ERR_TASK_FAILED plus a message naming
//      worker, callable, code and the exception's text;
//   4. a slow task waited for with a timeout;
//   5. a second host, two levels deep: a THREAD-mode level (add_level) and a
//      PROCESS-mode level (spawn_level), each driven by a lambda.
// Failures of calls throw dist::Error; the try_ forms return a dist::Status.
#include <dist_worker.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kFill = 1;  // SUB callable ids
constexpr std::uint64_t kFail = 2;
constexpr std::uint64_t kReduce = 3;
constexpr std::uint64_t kNap = 4;
constexpr std::uint64_t kProduce = 0xda90001;  // NEXT_LEVEL handles
constexpr std::uint64_t kPartial = 0xda90002;
constexpr std::int32_t kFailCode = 42;
constexpr std::uint32_t kN = 1000;  // elements the DAG sums

std::uint64_t *u64s(const DistTensor &t) { return dist::data<std::uint64_t>(t); }

// The DAG's steps. kProduce: out[i] = i + 1. kPartial: out[0] = sum of
// in[first .. first + count). kReduce: out[0] = a[0] + b[0].
std::int32_t dag_step(const dist::Call &call) {
    const auto t = call.tensors();
    if (call.callable() == kProduce && t.size() == 1) {
        for (std::uint32_t i = 0; i < t[0].shapes[0]; i++) u64s(t[0])[i] = i + 1;
    } else if (call.callable() == kPartial && t.size() == 2 && call.scalars().size() == 2) {
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0; i < call.scalar(1); i++) sum += u64s(t[0])[call.scalar(0) + i];
        u64s(t[1])[0] = sum;
    } else if (call.callable() == kReduce && t.size() == 3) {
        u64s(t[2])[0] = u64s(t[0])[0] + u64s(t[1])[0];
    } else {
        return 3;
    }
    return 0;
}

// kFill: writes scalars[1] into each element of its int32 output tensor.
// kFail: throws (the task fails with kFailCode). kNap: sleeps scalars[0] ms.
std::int32_t sub_step(const dist::Call &call) {
    switch (call.callable()) {
        case kFail: throw dist::TaskFailure(kFailCode, "failed on purpose");
        case kReduce: return dag_step(call);
        case kNap: std::this_thread::sleep_for(std::chrono::milliseconds(call.scalar(0))); return 0;
        case kFill: break;
        default: return 1;
    }
    const DistTensor &out = call.tensor(0);
    if (out.ndims != 1 || out.dtype != DIST_INT32 || call.scalars().size() != 2) return 2;
    for (std::uint32_t i = 0; i < out.shapes[0]; i++)
        dist::data<std::int32_t>(out)[i] = static_cast<std::int32_t>(call.scalar(1));
    return 0;
}

void require(bool ok, const std::string &what) {
    if (!ok) throw std::runtime_error(what);
}

// 5. L4 -> {L3 in this process (THREAD mode), L3 in a child (PROCESS mode)}
// -> their SUB workers. Each outer task adds scalars[1] to the u64 at
// scalars[0], in the top's heap, through one inner task.
void two_levels() {
    auto add = [](const dist::Call &call) {
        *reinterpret_cast<std::uint64_t *>(static_cast<std::uintptr_t>(call.scalar(0))) += call.scalar(1);
    };
    auto forward = [](dist::WorkerRef inner, const dist::Call &call) {
        inner.dispatch(dist::Task(dist::Sub, call.callable()).scalars(call.scalars()));
    };  // the library drains `inner` after each outer task

    dist::Worker top(dist::Options().level(4).heap_ring_size(1 << 20));
    dist::Worker host(dist::Options().level(3));
    host.add_thread(dist::Sub, add);
    top.add_level(std::move(host), forward);  // the top owns `host` now
    std::fflush(stdout);
    top.spawn_level([add](dist::Registrar &inner) { inner.spawn(dist::Sub, add); }, forward);

    std::uint64_t *sum = u64s(top.alloc({1}, dist::DType::UInt64));
    for (std::uint32_t i = 1; i <= 10; i++)
        top.dispatch_on(dist::Task(dist::NextLevel, 1).scalar(sum).scalar(i), {i % 2});
    top.drain();
    std::printf("two levels: 10 outer tasks on a THREAD and a PROCESS level summed to %llu\n",
                static_cast<unsigned long long>(*sum));
    require(*sum == 55, "the levels computed a wrong sum");
    top.shutdown().throw_if_error();
}

int run() {
    // Captured by reference below, so declared before the Worker: it
    // outlives the Worker's shutdown (below, or in its destructor on an
    // exception), and no task here can overrun the shutdown deadline.
    std::atomic<int> ran[2] = {{0}, {0}};
    dist::Worker worker;
    for (int k = 0; k < 2; k++)
        worker.add_thread(dist::Sub, [&ran, k](const dist::Call &call) {
            ran[k]++;
            return sub_step(call);
        });
    for (int k = 0; k < 2; k++) {
        std::fflush(stdout);  // the child inherits no buffered output
        const int pid = worker.spawn(dist::NextLevel, dag_step);
        std::printf("spawned next-level child %d as pid %d\n", k, pid);
    }

    // 1. Group task: member m fills half m of `values` with m + 1.
    std::vector<std::int32_t> values(64, 0);
    const std::uint32_t half = static_cast<std::uint32_t>(values.size() / 2);
    dist::Task fill(dist::Sub, kFill);
    for (std::uint32_t m = 0; m < 2; m++) {
        if (m > 0) fill.next_member();
        fill.output_existing(dist::tensor(values.data() + m * half, {half}, dist::DType::Int32)).scalar(m).scalar(m + 1);
    }
    dist::Status s = worker.dispatch(fill).try_wait();
    std::printf("group task (%u members): %s\n", fill.group_size(), std::string(s.name()).c_str());
    s.throw_if_error();
    for (std::size_t i = 0; i < values.size(); i++)
        require(values[i] == (i < half ? 1 : 2), "group task: wrong value at " + std::to_string(i));
    std::printf("sub workers ran %d and %d members\n", ran[0].load(), ran[1].load());
    require(ran[0] == 1 && ran[1] == 1, "group members did not run on both workers");

    // 2. A DAG: produce (child) -> partial sums (children) -> reduce (thread).
    {
        auto scope = worker.scope();
        dist::Future produce =
            worker.dispatch(dist::Task(dist::NextLevel, kProduce).output(dist::tensor({kN}, dist::DType::UInt64)));
        const DistTensor v = produce.tensor(0);  // the heap address the engine allocated
        const DistTensor part[2] = {worker.alloc({1}, dist::DType::UInt64), worker.alloc({1}, dist::DType::UInt64)};
        for (std::uint64_t k = 0; k < 2; k++)  // each reads v (waits for produce), writes its partial
            worker.dispatch(
                dist::Task(dist::NextLevel, kPartial).input(v).output_existing(part[k]).scalar(k * kN / 2).scalar(kN / 2));
        dist::Future reduce = worker.dispatch(
            dist::Task(dist::Sub, kReduce).input(part[0]).input(part[1]).output(dist::tensor({1}, dist::DType::UInt64)));
        reduce.wait();
        const unsigned long long sum = u64s(reduce.tensor(2))[0], want = kN * (kN + 1ull) / 2;
        std::printf("dag: produce -> 2 partial sums -> reduce = %llu (expected %llu)\n", sum, want);
        require(sum == want, "the DAG computed a wrong sum");
    }  // the scope ends: its heap memory comes back once nothing depends on it

    // 3. A failing callable: its status and message come back from wait.
    s = worker.dispatch(dist::Task(dist::Sub, kFail)).try_wait();
    std::printf("failing task: %s: %s\n", std::string(s.name()).c_str(), std::string(s.message()).c_str());
    require(s.status() == DIST_ERR_TASK_FAILED, "expected DIST_ERR_TASK_FAILED");
    require(s.message().find("error " + std::to_string(kFailCode)) != std::string_view::npos &&
                s.message().find("failed on purpose") != std::string_view::npos,
            "the message does not name the error code and the text");

    // drain reports the first failure since the last drain, as an exception.
    try {
        worker.drain();
        throw std::runtime_error("expected drain to report the failure");
    } catch (const dist::Error &e) {
        std::printf("drain: %s\n", std::string(e.name()).c_str());
        require(e.status() == DIST_ERR_TASK_FAILED, "expected DIST_ERR_TASK_FAILED from drain");
    }

    // 4. A wait with a timeout: the task runs on, and can be waited for again.
    dist::Future nap = worker.dispatch(dist::Task(dist::Sub, kNap).scalar(200));
    const bool early = nap.wait_for(20ms), later = nap.wait_for(10s);
    std::printf("slow task: done after 20 ms: %s, after up to 10 s: %s\n", early ? "yes" : "no", later ? "yes" : "no");
    require(!early && later, "wait_for did not time out and then finish");

    worker.shutdown().throw_if_error();

    two_levels();
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
