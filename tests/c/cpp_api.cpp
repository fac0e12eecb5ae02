// cpp_api: the C++ layer, dist_worker.hpp, over the C API.
//
// Built as C++17 and as C++20 with -Wall -Wextra -pedantic -Werror, and once
// more under AddressSanitizer and UndefinedBehaviorSanitizer. Proves:
// dist_worker.h is usable from C++ (the C types and a static member function
// as a raw C callable mix with the layer); dist::Worker is a move-only owner
// that shuts down exactly once and owns its callables; a group task built
// with dist::Task runs one member on every worker, each with its own args;
// failures come back as dist::Error (status and the library's message) or,
// from the try_ forms, as dist::Status / dist::Result; lambdas capturing
// state run on pool threads, in spawned children (with an init) and as the
// orchestration of THREAD- and PROCESS-mode levels, and in a child the
// caller forks itself (dist::child_serve); an exception thrown in a callable
// becomes a task failure carrying its text; scopes are RAII; waits take
// std::chrono timeouts. And misuse gives a status, never a crash: every
// operation of an empty (moved-from or shut-down) Worker is refused with
// one message; Scopes and Futures that outlive their Worker report
// DIST_ERR_SHUT_DOWN, also to a wait under way on another thread and to
// threads hammering the Worker while it shuts down; two concurrent
// shutdowns: one does it, the other returns DIST_ERR_SHUT_DOWN; Scopes end
// innermost first (end() refuses otherwise; a destroyed outer Scope ends
// after its inner ones).
#include "dist_worker.hpp"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

static_assert(sizeof(DistTensor) == 40, "DistTensor is 40 bytes on the wire");
static_assert(std::is_trivially_copyable<DistTensor>::value, "DistTensor is trivially copyable");
static_assert(std::is_same<DistStatus, int32_t>::value, "DistStatus is int32");
static_assert(!std::is_copy_constructible<dist::Worker>::value && !std::is_copy_assignable<dist::Worker>::value,
              "dist::Worker is move-only");
static_assert(std::is_nothrow_move_constructible<dist::Worker>::value &&
                  std::is_nothrow_move_assignable<dist::Worker>::value,
              "moving a dist::Worker never throws");
static_assert(!std::is_copy_constructible<dist::Scope>::value, "dist::Scope is move-only");
static_assert(std::is_base_of<std::runtime_error, dist::Error>::value, "dist::Error is a std::runtime_error");
static_assert(std::is_nothrow_copy_constructible<dist::Error>::value, "copying a dist::Error never throws");
static_assert(std::is_same<decltype(std::declval<dist::Error>().status()), DistStatus>::value,
              "dist::Error::status() is a DistStatus");

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string &what) {
    std::fprintf(stderr, "FAIL: %s\n  last error message: \"%s\"\n", what.c_str(), dist_last_error_message());
    std::exit(1);
}

void check(bool ok, const std::string &what) {
    if (!ok) fail(what);
    std::printf("ok: %s\n", what.c_str());
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

void expect(DistStatus got, DistStatus want, const char *what) {
    if (got != want)
        fail(std::string(what) + " returned " + dist_status_str(got) + ", expected " + dist_status_str(want));
    std::printf("ok: %s -> %s\n", what, dist_status_str(got));
}

// A try_ result: its status, and a message that names the failure.
template <class S>
void expect_status(const S &got, DistStatus want, const char *what, std::string_view part = {}) {
    if (got.status() != want)
        fail(std::string(what) + " returned " + dist_status_str(got.status()) + " (" + std::string(got.message()) +
             "), expected " + dist_status_str(want));
    if (want != DIST_OK && (got.message().empty() || !contains(got.message(), part)))
        fail(std::string(what) + ": message \"" + std::string(got.message()) + "\" lacks \"" + std::string(part) +
             "\"");
    std::printf("ok: %s -> %s%s%s\n", what, dist_status_str(got.status()), got.message().empty() ? "" : ": ",
                std::string(got.message()).c_str());
}

// `body` throws a dist::Error of `want` whose message contains `part`.
template <class Body>
dist::Error expect_throw(Body &&body, DistStatus want, const char *what, std::string_view part = {}) {
    try {
        body();
    } catch (const dist::Error &e) {
        if (e.status() != want)
            fail(std::string(what) + " threw " + dist_status_str(e.status()) + ", expected " + dist_status_str(want));
        if (e.message().empty() || !contains(e.message(), part))
            fail(std::string(what) + ": message \"" + std::string(e.message()) + "\" lacks \"" + std::string(part) +
                 "\"");
        if (std::string(e.what()) != std::string(dist_status_str(want)) + ": " + std::string(e.message()))
            fail(std::string(what) + ": what() is \"" + e.what() + "\"");
        std::printf("ok: %s threw dist::Error: %s\n", what, e.what());
        return e;
    }
    fail(std::string(what) + " did not throw");
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

constexpr int kWorkers = 4;
constexpr uint64_t kFailing = 0xBAD;

struct Registry {
    std::atomic<int> member_runs[kWorkers];
    std::atomic<int> total{0};

    // A plain static function: no lambda, no capture, a C-compatible
    // signature, registered through the C API on the Worker's handle.
    static int32_t serve(void *user, uint64_t callable, const DistTaskView *args, const DistCallConfig *config) {
        auto *self = static_cast<Registry *>(user);
        if (callable == kFailing) return 9;
        if (args->scalar_count != 1 || args->tensor_count != 1) return 1;
        uint64_t member = args->scalars[0];
        if (member >= kWorkers) return 2;
        if (args->tensors[0].data != 0x5000 + member || args->tensors[0].shapes[0] != member + 1) return 3;
        if (args->tensors[0].dtype != DIST_BFLOAT16) return 3;
        if (config->block_dim != 8 || !config->enable_profiling) return 4;
        self->member_runs[member].fetch_add(1);
        self->total.fetch_add(1);
        return 0;
    }
};

void version_and_options() {
    std::printf("== version, options\n");
    const std::string want = std::to_string(DIST_WORKER_VERSION_MAJOR) + "." +
                             std::to_string(DIST_WORKER_VERSION_MINOR) + "." +
                             std::to_string(DIST_WORKER_VERSION_PATCH);
    check(dist::version() == want, "dist::version() " + std::string(dist::version()) + " matches the header");

    DistWorkerOptions c;
    dist_worker_options_init(&c);
    dist::Options o;
    const DistWorkerOptions &d = o.raw();  // (fields, not bytes: the struct has padding)
    check(d.level == c.level && d.heap_ring_size == c.heap_ring_size && d.alloc_timeout_ms == c.alloc_timeout_ms &&
              d.task_timeout_ms == c.task_timeout_ms && d.shutdown_timeout_ms == c.shutdown_timeout_ms &&
              d.worker_spin_us == c.worker_spin_us && d.dispatcher_spin_us == c.dispatcher_spin_us &&
              d.wait_spin_us == c.wait_spin_us && d.poll_interval_us == c.poll_interval_us &&
              d.start_timeout_ms == c.start_timeout_ms,
          "dist::Options starts from dist_worker_options_init");
    o.level(4)
        .heap_ring_size(1 << 20)
        .alloc_timeout(2s)
        .task_timeout(1500ms)
        .shutdown_timeout(3s)
        .start_timeout(4s)
        .worker_spin(10us)
        .dispatcher_spin(20us)
        .wait_spin(1us)
        .poll_interval(30us);
    const DistWorkerOptions &r = o.raw();
    check(r.level == 4 && r.heap_ring_size == (1u << 20) && r.alloc_timeout_ms == 2000 && r.task_timeout_ms == 1500 &&
              r.shutdown_timeout_ms == 3000 && r.start_timeout_ms == 4000 && r.worker_spin_us == 10 &&
              r.dispatcher_spin_us == 20 && r.wait_spin_us == 1 && r.poll_interval_us == 30,
          "every setter writes its field");
    check(o.shutdown_timeout() == 3s && o.worker_spin() == 10us && o.level() == 4, "getters read them back");
    o.task_timeout(-5ms).alloc_timeout(std::chrono::hours(24 * 365 * 1000));
    check(r.task_timeout_ms == 0 && r.alloc_timeout_ms == UINT32_MAX, "durations are clamped to the C range");

    DistCallConfig cfg = dist::default_config();
    check(cfg.block_dim == 24 && cfg.aicpu_thread_num == 3 && !cfg.enable_profiling && !cfg.enable_dump_tensor,
          "dist::default_config() is dist_call_config_init's");
    dist::Task t(dist::Sub, 1);
    const DistCallConfig &tc = t.config();
    check(tc.block_dim == cfg.block_dim && tc.aicpu_thread_num == cfg.aicpu_thread_num &&
              tc.enable_profiling == cfg.enable_profiling && tc.enable_dump_tensor == cfg.enable_dump_tensor &&
              t.group_size() == 1 && t.c_task().args != nullptr,
          "a dist::Task starts with the default config and one member");
}

void errors() {
    std::printf("== errors: dist::Error, dist::Status, dist::Result\n");
    dist::Options huge = dist::Options().heap_ring_size(uint64_t(1) << 62);
    dist::Result<dist::Worker> r = dist::Worker::create(huge);
    check(!r.ok() && !r && r.status() != DIST_OK && !r.message().empty(),
          "Worker::create with a 4 EiB heap ring fails: " + std::string(r.error().name()) + ": " +
              std::string(r.message()));
    const DistStatus create_status = r.status();
    expect_throw([&] { (void)r.value(); }, create_status, "Result::value() without a value");
    dist::Error e = expect_throw([&] { dist::Worker w(huge); }, create_status, "the Worker constructor");
    check(e.message() == dist_last_error_message(), "the message is dist_last_error_message() of the failing call");
    check(std::string(e.operation()) == "dist_worker_create" && e.name() == dist_status_str(create_status),
          "the error names the C function and the status");

    dist::Worker w;
    expect_throw([&] { w.dispatch(dist::Task(static_cast<dist::WorkerType>(7), 1)); }, DIST_ERR_INVALID_ARGUMENT,
                 "dispatch with worker type 7", "worker type 7");
    dist::Result<dist::Future> d = w.try_dispatch(dist::Task(static_cast<dist::WorkerType>(7), 1));
    expect_status(d, DIST_ERR_INVALID_ARGUMENT, "try_dispatch with worker type 7", "worker type 7");
    check(d.message() == dist_last_error_message(), "try_dispatch captured the library's message");
    check(d.value_or(dist::Future()).id() == 0, "Result::value_or gives the fallback");
    expect_status(w.try_wait(12345), DIST_ERR_INVALID_ARGUMENT, "try_wait on an unknown id");
    expect_status(w.try_alloc({1, 2, 3, 4, 5, 6}, dist::DType::UInt8), DIST_ERR_INVALID_ARGUMENT,
                  "try_alloc of 6 dimensions", "ndims 6");
    expect_status(w.try_dispatch(dist::Task(dist::Sub, 1).next_member().group(3)), DIST_ERR_INVALID_ARGUMENT,
                  "a group(3) with args for 2 members", "dist_worker_dispatch: the dist::Task has group(3)");
    const uint32_t two[2] = {0, 1};
    expect_status(w.try_dispatch_on(dist::Task(dist::Sub, 1), two), DIST_ERR_INVALID_ARGUMENT,
                  "try_dispatch_on with 2 indices for 1 member", "2 worker indices");
    dist::Status ok = w.try_drain();
    check(ok.ok() && static_cast<bool>(ok) && ok.status() == DIST_OK && ok.message().empty(),
          "a successful try_ returns DIST_OK with no message");

    dist::Worker moved = std::move(w);
    expect_status(w.try_add_thread(dist::Sub, [](const dist::Call &) {}), DIST_ERR_NULL_ARGUMENT,
                  "registration on a moved-from Worker", "empty");
    expect_status(w.try_start(), DIST_ERR_NULL_ARGUMENT, "start on a moved-from Worker");
    expect_status(w.shutdown(), DIST_OK, "shutdown of a moved-from Worker (a no-op)");
    expect_status(moved.shutdown(), DIST_OK, "shutdown of the moved-to Worker");
}

void group_task() {
    std::printf("== a group task over raw C callables and lambdas (THREAD mode)\n");
    static Registry reg;
    for (auto &r : reg.member_runs) r.store(0);
    std::atomic<int> lambda_runs{0};

    dist::Worker worker;
    expect(dist_worker_add_thread(worker.get(), DIST_WORKER_NEXT_LEVEL, &Registry::serve, &reg), DIST_OK,
           "dist_worker_add_thread of a static member function on worker.get()");
    dist::check(dist_worker_add_thread(worker.get(), DIST_WORKER_NEXT_LEVEL, &Registry::serve, &reg),
                "dist_worker_add_thread");
    std::printf("ok: dist::check passed a second raw registration\n");
    for (int i = kWorkers / 2; i < kWorkers; i++)
        worker.add_thread(dist::NextLevel, [&lambda_runs, r = &reg](const dist::Call &call) {
            lambda_runs.fetch_add(1);
            return Registry::serve(r, call.callable(), &call.view(), &call.config());
        });
    std::printf("ok: %d lambdas capturing state registered\n", kWorkers / 2);

    // Move the owner: only the destination shuts down.
    dist::Worker moved = std::move(worker);
    check(!worker && worker.get() == nullptr && moved && moved.get() != nullptr, "move transferred ownership");

    const int kRounds = 50;
    for (int round = 0; round < kRounds; round++) {
        dist::Task task(dist::NextLevel, 42);
        task.block_dim(8).profiling();
        for (uint32_t m = 0; m < kWorkers; m++) {
            if (m > 0) task.next_member();
            DistTensor t = dist::tensor({m + 1}, dist::DType::BFloat16);
            t.data = 0x5000 + m;
            task.input(t).scalar(m);
        }
        if (task.group_size() != kWorkers) fail("group size " + std::to_string(task.group_size()));
        dist::Future f = moved.dispatch(task);
        if (!f || f.id() == 0) fail("group dispatch gave no id");
        f.wait();
    }
    std::printf("ok: %d group tasks of %d members each succeeded\n", kRounds, kWorkers);
    for (int m = 0; m < kWorkers; m++)
        if (reg.member_runs[m].load() != kRounds)
            fail("member " + std::to_string(m) + " ran " + std::to_string(reg.member_runs[m].load()) + " times");
    check(lambda_runs.load() == kRounds * kWorkers / 2, "every member ran once per group with its own args, " +
                                                            std::to_string(lambda_runs.load()) + " on the lambdas");

    // The same group with one set of args for every member (group(n)).
    std::atomic<int> shared_runs{0};
    {
        dist::Worker w;
        for (int i = 0; i < 3; i++)
            w.add_thread(dist::Sub, [&shared_runs](const dist::Call &c) {
                if (c.scalars().size() != 2 || c.scalar(0) != 11 || c.scalar(1) != 22) return 1;
                shared_runs++;
                return 0;
            });
        dist::Task t = dist::Task(dist::Sub, 3).scalar(11).scalar(22).group(3);
        check(t.group_size() == 3 && t.members() == 1, "group(3) with one set of args");
        dist::Task copy = t;  // copies own their arrays
        w.dispatch(copy).wait();
        dist::Task moved_task = std::move(copy);
        w.dispatch(moved_task).wait();
        w.dispatch(copy.scalar(11).scalar(22)).wait();  // a moved-from Task is empty, and usable
        check(shared_runs.load() == 7, "every member got the shared args (copied and moved tasks too)");
    }

    // A failing task: the status and message come back from wait and drain.
    dist::Future bad = moved.dispatch(dist::Task(dist::NextLevel, kFailing));
    expect_status(bad.try_wait(), DIST_ERR_TASK_FAILED, "try_wait on the failing task", "returned error 9");
    expect_throw([&] { bad.wait(); }, DIST_ERR_TASK_FAILED, "wait on the failing task", "from callable 0xbad");
    expect_throw([&] { moved.drain(); }, DIST_ERR_TASK_FAILED, "drain", "returned error 9");
    moved.drain();
    std::printf("ok: the second drain is clean\n");

    expect_status(moved.shutdown(), DIST_OK, "shutdown through the owner");
    check(!moved, "the owner is empty after shutdown");

    {
        dist::Worker scoped;  // destroyed without an explicit shutdown
        expect(dist_worker_add_thread(scoped.get(), DIST_WORKER_SUB, &Registry::serve, &reg), DIST_OK,
               "add_thread on a scoped owner");
        scoped.add_thread(dist::Sub, [](const dist::Call &) {});
        scoped = dist::Worker();  // move-assignment shuts the old one down
        scoped.add_thread(dist::Sub, std::function<void(const dist::Call &)>([](const dist::Call &) {}));
        scoped.dispatch(dist::Task(dist::Sub, 1)).wait();
    }
    std::printf("ok: a scoped owner shut down in its destructor\n");
}

void exceptions_in_callables() {
    std::printf("== exceptions in callables become task failures\n");
    auto thrower = [](const dist::Call &call) -> int32_t {
        switch (call.callable()) {
            case 1: throw std::runtime_error("disk full: /scratch");
            case 2: throw dist::TaskFailure(5, "quota exceeded");
            case 3: throw 42;
            case 4: return static_cast<int32_t>(call.scalar(3));  // one scalar: out of range
            case 6: dist::set_task_message("custom text"); return 6;
            default: return 0;
        }
    };
    dist::Worker w;
    w.add_thread(dist::Sub, thrower);  // worker 0: a pool thread
    const int32_t pid = w.spawn(dist::Sub, thrower);  // worker 1: a child process
    check(pid > 0, "spawn returned the child's pid " + std::to_string(pid));

    for (uint32_t on = 0; on < 2; on++) {
        const std::string where = on == 0 ? "SUB worker 0 (thread)" : "SUB worker 1 (child pid";
        auto run = [&](uint64_t callable) {
            return w.dispatch_on(dist::Task(dist::Sub, callable).scalar(0), {on}).try_wait();
        };
        expect_status(run(1), DIST_ERR_TASK_FAILED, "a std::runtime_error", "returned error -100 from callable 0x1: disk full: /scratch");
        expect_status(run(1), DIST_ERR_TASK_FAILED, "... on the expected worker", where);
        expect_status(run(2), DIST_ERR_TASK_FAILED, "a dist::TaskFailure", "returned error 5 from callable 0x2: quota exceeded");
        expect_status(run(3), DIST_ERR_TASK_FAILED, "a non-std exception", "unknown C++ exception");
        expect_status(run(4), DIST_ERR_TASK_FAILED, "Call::scalar out of range",
                      "dist::Call::scalar(3): the task has 1 scalar");
        expect_status(run(6), DIST_ERR_TASK_FAILED, "a code with dist::set_task_message",
                      "returned error 6 from callable 0x6: custom text");
        expect_status(run(5), DIST_OK, "the worker still serves afterwards");
    }
    expect_status(w.try_drain(), DIST_ERR_TASK_FAILED, "drain reports the first", "disk full");

    // Shutdown from inside one of the worker's own callables is refused and
    // changes nothing (the worker and its callables stay alive).
    dist::Worker self;
    std::atomic<DistStatus> inside{DIST_OK};
    dist::Worker *selfp = &self;
    self.add_thread(dist::Sub, [selfp, &inside](const dist::Call &) { inside = selfp->shutdown().status(); });
    self.dispatch(dist::Task(dist::Sub, 1)).wait();
    expect(inside.load(), DIST_ERR_BAD_STATE, "Worker::shutdown from its own callable");
    check(static_cast<bool>(self), "the Worker still owns its worker");
    self.dispatch(dist::Task(dist::Sub, 1)).wait();
    expect_status(self.shutdown(), DIST_OK, "and shuts down from the host afterwards");

    // A THREAD callable submits to its own worker through a captured (const) WorkerRef.
    dist::Worker nest;
    std::atomic<int> nested_runs{0};
    auto nested = [ref = nest.ref(), &nested_runs](const dist::Call &call) {
        if (call.callable() == 1)
            ref.dispatch(dist::Task(dist::Sub, 2)).wait();  // runs on the other worker
        else
            nested_runs++;
    };
    nest.add_thread(dist::Sub, nested);
    nest.add_thread(dist::Sub, nested);
    nest.dispatch(dist::Task(dist::Sub, 1)).wait();
    check(nested_runs.load() == 1, "a callable dispatched to its own worker and waited");
    expect_status(nest.shutdown(), DIST_OK, "shutdown");
    expect_status(w.shutdown(), DIST_OK, "shutdown");
}

void spawned_children() {
    std::printf("== spawned children run lambdas on their copy of the captured state\n");
    struct ChildState {
        uint64_t ready = 0;  // set by the init, in the child
        std::vector<uint64_t> table{100, 200, 300};
    };
    auto state = std::make_shared<ChildState>();
    const std::string prefix = "child-";
    dist::Worker w(dist::Options().heap_ring_size(1 << 20));

    // out[0] = table[scalar] + ready + prefix length; ready is 7 only when the init ran there first.
    const int32_t pid = w.spawn_with_init(
        dist::Sub, [state] { state->ready = 7; },
        [state, prefix](const dist::Call &call) {
            if (state->ready != 7) throw std::runtime_error("the init did not run in this process");
            dist::data<uint64_t>(call.tensor(0))[0] = state->table.at(call.scalar(0)) + state->ready + prefix.size();
        });
    std::function<int(const dist::Call &)> doubler = [factor = uint64_t(2)](const dist::Call &call) {
        dist::data<uint64_t>(call.tensor(0))[0] = call.scalar(0) * factor;
        return 0;
    };
    const int32_t pid2 = w.spawn(dist::Sub, doubler);
    check(pid > 0 && pid2 > 0 && pid != pid2 && pid != getpid(), "two children spawned");
    state->ready = 1;  // the host's copy; the children keep theirs

    {
        auto scope = w.scope();
        const DistTensor out = dist::tensor({1}, dist::DType::UInt64);  // data 0: the engine allocates it
        dist::Future a = w.dispatch_on(dist::Task(dist::Sub, 1).output(out).scalar(2), {0});
        dist::Future b = w.dispatch_on(dist::Task(dist::Sub, 1).output(out).scalar(21), {1});
        a.wait();
        b.wait();
        const uint64_t got_a = dist::data<uint64_t>(a.tensor(0))[0], got_b = dist::data<uint64_t>(b.tensor(0))[0];
        check(got_a == 300 + 7 + prefix.size(), "the child with an init computed " + std::to_string(got_a));
        check(got_b == 42, "the std::function child computed " + std::to_string(got_b));
        check(a.tensor(0).data != 0 && a.tensor(0, 0).data == a.tensor(0).data, "Future::tensor gives the heap address");
        expect_status(a.try_tensor(0, 5), DIST_ERR_INVALID_ARGUMENT, "try_tensor of a tensor the task lacks");
        expect_status(scope.end(), DIST_OK, "Scope::end");
    }
    expect_status(w.shutdown(), DIST_OK, "shutdown reaps both children");

    // An init that throws: start fails with CHILD_DIED naming its code.
    dist::Worker bad;
    (void)bad.spawn_with_init(dist::Sub, []() -> int { throw std::runtime_error("no device"); },
                              [](const dist::Call &) {});
    expect_status(bad.try_start(), DIST_ERR_CHILD_DIED, "start with an init that threw", "-100");
    expect_throw([&] { bad.dispatch(dist::Task(dist::Sub, 1)); }, DIST_ERR_SHUT_DOWN, "dispatch after a failed start");
    (void)bad.shutdown();
}

void scopes() {
    std::printf("== RAII scopes\n");
    dist::Worker w(dist::Options().heap_ring_size(1 << 20));
    w.add_thread(dist::Sub, [](const dist::Call &) {});
    {
        auto s = w.scope();
        check(s.active(), "scope() opened a scope");
        (void)w.alloc({4}, dist::DType::Float32);
        expect_status(s.end(), DIST_OK, "Scope::end reports the status");
        check(!s.active(), "and leaves the Scope ended");
        expect_status(s.end(), DIST_OK, "a second end() is a no-op");
        expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE, "no scope is left open");
    }
    {
        auto s = w.scope();
        auto moved = std::move(s);
        check(!s.active() && moved.active(), "a moved Scope ends once");
    }
    expect_throw([&] { dist::check(dist_worker_scope_end(w.get()), "dist_worker_scope_end"); }, DIST_ERR_BAD_STATE,
                 "the destructor ended the scope: dist::check on the raw scope_end", "without a matching scope_begin");

    // 64 MiB of 64 KiB allocations from a 1 MiB ring: each scope's memory comes back at its end.
    for (int i = 0; i < 1024; i++) {
        auto s = w.scope();
        const DistTensor t = w.alloc({64 * 1024}, dist::DType::UInt8);
        dist::data<uint8_t>(t)[0] = static_cast<uint8_t>(i);
        w.dispatch(dist::Task(dist::Sub, 1).inout(t));
    }
    w.drain();
    std::printf("ok: 1024 scopes of 64 KiB each from a 1 MiB ring\n");

    std::vector<dist::Scope> nested;
    for (int i = 0; i < DIST_MAX_SCOPE_DEPTH; i++) nested.push_back(w.scope());
    expect_status(w.try_scope(), DIST_ERR_INVALID_ARGUMENT, "try_scope past the deepest nesting");
    expect_throw([&] { (void)w.scope(); }, DIST_ERR_INVALID_ARGUMENT, "scope() past the deepest nesting");
    nested.clear();
    expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE, "all 64 nested scopes ended");
    expect_status(w.shutdown(), DIST_OK, "shutdown");
}

void wait_with_timeout() {
    std::printf("== waits with std::chrono timeouts\n");
    dist::Worker w;
    std::atomic<int> naps{0};
    w.add_thread(dist::Sub, [&naps](const dist::Call &call) {
        std::this_thread::sleep_for(std::chrono::milliseconds(call.scalar(0)));
        naps++;
        if (call.callable() == 2) throw std::runtime_error("woke up wrong");
    });
    dist::Future f = w.dispatch(dist::Task(dist::Sub, 1).scalar(300));
    auto t0 = Clock::now();
    check(!f.wait_for(0ms) && ms_since(t0) < 100, "wait_for(0ms) only looks");
    t0 = Clock::now();
    expect_status(f.try_wait_for(50ms), DIST_ERR_TIMEOUT, "try_wait_for(50ms) on a 300 ms task");
    const double took = ms_since(t0);
    check(took >= 49 && took < 250, "it waited " + std::to_string(took) + " ms");
    check(!w.wait_for(f.id(), 1us), "a 1 us wait is rounded up to 1 ms, not 0 (it still times out)");
    check(f.wait_for(10s), "wait_for(10s) sees it finish");
    check(f.wait_until(Clock::now() + 1s) && w.wait_for(f.id(), 0ms), "and it stays known until the drain");
    expect_status(f.try_wait_until(Clock::now() - 1s), DIST_OK, "a past deadline only looks");

    dist::Future g = w.dispatch(dist::Task(dist::Sub, 2).scalar(10));
    expect_throw([&] { (void)g.wait_for(5s); }, DIST_ERR_TASK_FAILED, "wait_for on a failing task", "woke up wrong");
    expect_throw([&] { w.drain(); }, DIST_ERR_TASK_FAILED, "drain");
    expect_status(f.try_wait_for(0ms), DIST_ERR_INVALID_ARGUMENT, "the id is released by the drain");
    check(naps.load() == 2, "both tasks ran");
    expect_status(w.shutdown(), DIST_OK, "shutdown");
}

void caller_child() {
    std::printf("== a child the caller forks, serving with dist::child_serve\n");
    void *mailbox = mmap(nullptr, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    check(mailbox != MAP_FAILED, "a MAP_SHARED mailbox");
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // a failed test must not leave a server behind
        int served = 0;
        const dist::Status st = dist::child_serve(mailbox, [&served](const dist::Call &call) {
            served++;
            if (call.callable() == 2) throw std::runtime_error("no such file");
            return call.scalar(0) == static_cast<uint64_t>(served) ? 0 : 1;
        });
        _exit(st.ok() ? 0 : 1);
    }
    dist::Worker w;
    w.add_process(dist::Sub, mailbox);
    w.set_process_pid(mailbox, pid);
    expect_status(w.try_set_process_pid(nullptr, pid), DIST_ERR_NULL_ARGUMENT, "set_process_pid without a mailbox");
    for (uint64_t i = 1; i <= 3; i++) w.dispatch(dist::Task(dist::Sub, 1).scalar(i)).wait();
    std::printf("ok: three tasks ran in order in the caller's child\n");
    expect_status(w.dispatch(dist::Task(dist::Sub, 2)).try_wait(), DIST_ERR_TASK_FAILED,
                  "an exception in the caller's child", "returned error -100 from callable 0x2: no such file");
    (void)w.try_drain();
    expect_status(w.shutdown(), DIST_OK, "shutdown");
    int status = 0;
    check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child_serve returned DIST_OK at SHUTDOWN and the child exited 0");
    munmap(mailbox, DIST_MAILBOX_SIZE);
}

// SUB callable 1: add scalars[1] to the u64 at scalars[0]; 5: fail.
int32_t leaf(const dist::Call &call) {
    if (call.callable() == 5) throw std::runtime_error("disk full");
    *reinterpret_cast<uint64_t *>(static_cast<uintptr_t>(call.scalar(0))) += call.scalar(1);
    return 0;
}

void levels() {
    std::printf("== levels: add_level (THREAD) and spawn_level (PROCESS) with lambda orchestration\n");
    dist::Worker top(dist::Options().level(4).heap_ring_size(1 << 20));

    // L3 worker 0: a THREAD-mode level with two lambda SUB workers.
    dist::Worker l3(dist::Options().level(3));
    std::atomic<int> leaf_runs{0};
    for (int i = 0; i < 2; i++)
        l3.add_thread(dist::Sub, [&leaf_runs](const dist::Call &call) {
            leaf_runs++;
            return leaf(call);
        });
    std::atomic<int> orch_runs{0};
    auto forward = [&orch_runs](dist::WorkerRef inner, const dist::Call &call) {
        orch_runs++;
        if (call.callable() == 7) throw std::runtime_error("no plan for callable 7");
        dist::Future f = inner.dispatch(dist::Task(dist::Sub, call.callable()).scalars(call.scalars()));
        (void)f.try_wait();  // the library's drain reports it
    };
    expect_status(top.try_add_level(std::move(top), forward), DIST_ERR_INVALID_ARGUMENT, "a level of itself");
    check(static_cast<bool>(top), "a refused add_level leaves the Worker alone");
    {
        dist::Worker started;
        started.start();
        expect_status(top.try_add_level(std::move(started), forward), DIST_ERR_BAD_STATE, "a started inner level");
        check(static_cast<bool>(started), "the refused inner Worker still owns its worker");
    }
    top.add_level(std::move(l3), forward);
    check(!l3 && l3.get() == nullptr, "the adopted inner Worker is empty: the outer one shuts it down");
    expect_status(l3.shutdown(), DIST_OK, "its shutdown() is a no-op now");

    // L3 worker 1: a PROCESS-mode level; its setup spawns two lambda children.
    const uint64_t bonus = 1000;  // added by the level process's orchestration: captured by value
    const int32_t level_pid = top.spawn_level(
        dist::Options().level(3),
        [](dist::Registrar &inner) {
            for (int i = 0; i < 2; i++) inner.spawn(dist::Sub, leaf);
        },
        [bonus](dist::WorkerRef inner, const dist::Call &call) -> int {
            uint64_t s[2] = {call.scalar(0), call.scalar(1) * bonus};
            inner.dispatch(dist::Task(dist::Sub, call.callable()).scalars(s));
            return 0;
        });
    check(level_pid > 0, "spawn_level returned the level's pid " + std::to_string(level_pid));

    const DistTensor slot = top.alloc({1}, dist::DType::UInt64);
    uint64_t *counter = dist::data<uint64_t>(slot);
    auto run = [&](uint32_t on, uint64_t callable, uint64_t add) {
        return top.dispatch_on(dist::Task(dist::NextLevel, callable).scalar(counter).scalar(add), {on}).try_wait();
    };
    for (uint64_t i = 1; i <= 10; i++) expect_status(run(uint32_t(i % 2), 1, i), DIST_OK, "an outer task");
    // Odd i (25 in all) ran on the PROCESS level, times bonus; even ones (30) on the THREAD level.
    check(*counter == 25 * bonus + 30, "outer tasks on both levels wrote the top's heap: " + std::to_string(*counter));
    check(orch_runs.load() == 5 && leaf_runs.load() == 5, "the THREAD level's lambdas ran on this process's state");

    dist::Status s = run(1, 5, 0);
    expect_status(s, DIST_ERR_TASK_FAILED, "a leaf exception under the PROCESS level", "L4 task 0x");
    check(contains(s.message(), "-> L3 worker 1 (child pid") &&
              contains(s.message(), "returned error -100 from callable 0x5: disk full"),
          "the failure comes up with its path: " + std::string(s.message()));
    s = run(0, 5, 0);
    check(contains(s.message(), "-> L3 worker 0 (thread): task 0x") && contains(s.message(), "disk full"),
          "and from the THREAD level: " + std::string(s.message()));
    s = run(0, 7, 0);
    expect_status(s, DIST_ERR_TASK_FAILED, "an exception in the orchestration lambda",
                  "the orchestration function returned error -100: no plan for callable 7");
    (void)top.try_drain();

    expect_status(top.shutdown(), DIST_OK, "shutting down the top");
    check(waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD, "no child of the top is left");
    check(kill(level_pid, 0) == -1 && errno == ESRCH, "the level process is gone");
}

// Every operation of `w` is refused with `want` and the empty Worker's message.
void every_operation_refused(dist::Worker &w, DistStatus want, const std::string &state) {
    const char *empty = "this dist::Worker is empty (moved from, or shut down)";
    auto noop = [](const dist::Call &) {};
    auto orch = [](dist::WorkerRef, const dist::Call &) {};
    auto setup = [](dist::Registrar &) {};
    const uint32_t index[1] = {0};
    const std::string on = " on a " + state + " Worker";
    expect_status(w.try_start(), want, ("start" + on).c_str(), empty);
    expect_status(w.try_dispatch(dist::Task(dist::Sub, 1)), want, ("dispatch" + on).c_str(), empty);
    expect_throw([&] { w.dispatch(dist::Task(dist::Sub, 1)); }, want, ("dispatch (throwing)" + on).c_str(), empty);
    expect_status(w.try_dispatch_on(dist::Task(dist::Sub, 1), index), want, ("dispatch_on" + on).c_str(), empty);
    expect_status(w.try_wait(1), want, ("wait" + on).c_str(), empty);
    expect_status(w.try_wait_for(1, 10ms), want, ("wait_for" + on).c_str(), empty);
    expect_status(w.try_drain(), want, ("drain" + on).c_str(), empty);
    expect_status(w.try_scope(), want, ("scope" + on).c_str(), empty);
    expect_status(w.try_alloc({4}, dist::DType::UInt8), want, ("alloc" + on).c_str(), empty);
    expect_status(w.try_task_tensor(1, 0, 0), want, ("task_tensor" + on).c_str(), empty);
    expect_status(w.try_add_thread(dist::Sub, noop), want, ("add_thread" + on).c_str(), empty);
    expect_status(w.try_spawn(dist::Sub, noop), want, ("spawn" + on).c_str(), empty);
    expect_status(w.try_spawn_with_init(dist::Sub, [] {}, noop), want, ("spawn_with_init" + on).c_str(), empty);
    expect_status(w.try_spawn_level(setup, orch), want, ("spawn_level" + on).c_str(), empty);
    expect_status(w.try_spawn_level(dist::Options().level(3), setup, orch), want,
                  ("spawn_level with options" + on).c_str(), empty);
    dist::Worker inner(dist::Options().level(3));
    expect_status(w.try_add_level(std::move(inner), orch), want, ("add_level" + on).c_str(), empty);
    check(static_cast<bool>(inner), "the refused add_level left the inner Worker alone");
    int mailbox_stand_in = 0;
    expect_status(w.try_add_process(dist::Sub, &mailbox_stand_in), want, ("add_process" + on).c_str(), empty);
    expect_status(w.try_set_process_pid(&mailbox_stand_in, 1), want, ("set_process_pid" + on).c_str(), empty);
    expect_status(w.shutdown(), DIST_OK, ("shutdown" + on + " (a no-op)").c_str());
    check(!w && w.get() == nullptr && w.ref().get() == nullptr, "the " + state + " Worker is empty");
}

void empty_workers() {
    std::printf("== an empty Worker refuses every operation with one message\n");
    dist::Worker w;
    dist::Worker moved = std::move(w);
    every_operation_refused(w, DIST_ERR_NULL_ARGUMENT, "moved-from");
    expect_status(moved.shutdown(), DIST_OK, "shutdown");
    every_operation_refused(moved, DIST_ERR_SHUT_DOWN, "shut-down");

    dist::Worker top;
    dist::Worker gone;
    (void)gone.shutdown();
    expect_status(top.try_add_level(std::move(w), [](dist::WorkerRef, const dist::Call &) {}),
                  DIST_ERR_NULL_ARGUMENT, "add_level of a moved-from inner Worker",
                  "the inner dist::Worker is empty (moved from, or shut down)");
    expect_status(top.try_add_level(std::move(gone), [](dist::WorkerRef, const dist::Call &) {}),
                  DIST_ERR_SHUT_DOWN, "add_level of a shut-down inner Worker", "the inner dist::Worker is empty");
    expect_status(top.shutdown(), DIST_OK, "shutdown");
}

void lifetimes() {
    std::printf("== Scopes and Futures that outlive their Worker\n");
    auto work = [](const dist::Call &call) {
        if (!call.scalars().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(call.scalar(0)));
    };
    {
        dist::Worker w(dist::Options().heap_ring_size(1 << 20));
        w.add_thread(dist::Sub, work);
        dist::Scope s = w.scope();
        expect_status(w.shutdown(), DIST_OK, "shutdown with a Scope open");
        check(s.active(), "the Scope has not ended yet");
        expect_status(s.end(), DIST_ERR_SHUT_DOWN, "Scope::end after its Worker's shutdown",
                      "dist_worker_scope_end: the dist::Worker of this dist::Scope is gone");
        check(!s.active(), "and leaves the Scope ended");
        expect_status(s.end(), DIST_OK, "a second end() is a no-op");
    }
    {
        std::vector<dist::Scope> left;
        dist::Future f, copy;
        {
            dist::Worker w(dist::Options().heap_ring_size(1 << 20));
            w.add_thread(dist::Sub, work);
            left.push_back(w.scope());
            left.push_back(w.scope());
            f = w.dispatch(dist::Task(dist::Sub, 1).output(dist::tensor({16}, dist::DType::UInt8)));
            f.wait();
            check(f.tensor(0).data != 0, "the Future works while its Worker lives");
            copy = f;
            dist::Worker moved = std::move(w);  // the Future follows its worker, not the object
            expect_status(f.try_wait(), DIST_OK, "a Future of a moved Worker waits");
        }  // `moved` is destroyed with two scopes open and the Future alive
        expect_status(f.try_wait(), DIST_ERR_SHUT_DOWN, "Future::try_wait after its Worker was destroyed",
                      "the dist::Worker of this dist::Future is gone");
        expect_throw([&] { f.wait(); }, DIST_ERR_SHUT_DOWN, "Future::wait after it", "is gone");
        expect_throw([&] { (void)copy.wait_for(1s); }, DIST_ERR_SHUT_DOWN, "Future::wait_for (a copy)", "is gone");
        expect_status(f.try_wait_for(0ms), DIST_ERR_SHUT_DOWN, "Future::try_wait_for(0ms)", "is gone");
        expect_status(f.try_wait_until(Clock::now() + 1s), DIST_ERR_SHUT_DOWN, "Future::try_wait_until", "is gone");
        expect_status(f.try_tensor(0), DIST_ERR_SHUT_DOWN, "Future::try_tensor", "dist_worker_task_tensor:");
        expect_throw([&] { (void)f.tensor(0, 0); }, DIST_ERR_SHUT_DOWN, "Future::tensor", "is gone");
        check(f.id() != 0 && static_cast<bool>(f), "the Future keeps its id");
        expect_status(left.back().end(), DIST_ERR_SHUT_DOWN, "Scope::end after its Worker was destroyed", "is gone");
        left.clear();
        std::printf("ok: Scopes destroyed after their Worker do nothing\n");
    }

    // A wait under way on another thread when the Worker shuts down returns
    // within a slice, long before the shutdown finishes the task.
    {
        dist::Worker w;
        w.add_thread(dist::Sub, work);
        const dist::Future slow = w.dispatch(dist::Task(dist::Sub, 1).scalar(400));
        std::atomic<bool> started{false};
        std::atomic<double> returned_at{0};
        const Clock::time_point t0 = Clock::now();
        dist::Status seen;
        std::thread waiter([&] {
            started = true;
            seen = slow.try_wait();
            returned_at = ms_since(t0);
        });
        while (!started) std::this_thread::yield();
        std::this_thread::sleep_for(50ms);
        const double shutdown_at = ms_since(t0);
        expect_status(w.shutdown(), DIST_OK, "shutdown while another thread waits on a Future");
        const double shutdown_done = ms_since(t0);
        waiter.join();
        expect_status(seen, DIST_ERR_SHUT_DOWN, "the wait under way", "the dist::Worker of this dist::Future is");
        check(returned_at.load() < shutdown_done && shutdown_done > 300,
              "the waiter returned " + std::to_string(returned_at.load() - shutdown_at) +
                  " ms after the shutdown began, which finished the 400 ms task " +
                  std::to_string(shutdown_done - shutdown_at) + " ms after it began");
    }

    // Threads hammering a Worker and its Futures while it shuts down: each
    // call returns a status, none touches freed memory.
    for (int round = 0; round < 3; round++) {
        dist::Worker w(dist::Options().heap_ring_size(1 << 20));
        for (int i = 0; i < 2; i++)
            w.add_thread(dist::Sub, [](const dist::Call &call) {
                std::this_thread::sleep_for(std::chrono::microseconds(call.scalar(0)));
            });
        w.start();
        std::atomic<bool> stop{false};
        std::atomic<int> calls{0}, refused{0}, unexpected{0};
        auto tally = [&](DistStatus s, std::initializer_list<DistStatus> fine) {
            calls++;
            if (s == DIST_ERR_SHUT_DOWN || s == DIST_ERR_NULL_ARGUMENT) refused++;
            else if (s != DIST_OK && std::find(fine.begin(), fine.end(), s) == fine.end()) {
                std::fprintf(stderr, "unexpected %s: %s\n", dist_status_str(s), dist_last_error_message());
                unexpected++;
            }
        };
        auto hammer = [&](unsigned seed) {
            std::vector<dist::Future> mine;
            for (unsigned i = seed; !stop || i < seed + 40; i++) {
                dist::Result<dist::Future> d = w.try_dispatch(dist::Task(dist::Sub, 1).scalar(50 + i % 200));
                tally(d.status(), {});
                if (d) {
                    if (mine.size() == 8) mine.erase(mine.begin());
                    mine.push_back(*d);
                }
                for (const dist::Future &f : mine)
                    tally(f.try_wait_for(i % 2 ? 0ms : 1ms).status(), {DIST_ERR_TIMEOUT});
                if (!mine.empty()) tally(mine.back().try_tensor(0).status(), {DIST_ERR_INVALID_ARGUMENT});
                if (i % 4 == 0) {
                    dist::Result<dist::Scope> s = w.try_scope();
                    tally(s.status(), {DIST_ERR_INVALID_ARGUMENT});
                    if (s) tally(s->end().status(), {DIST_ERR_BAD_STATE});
                }
                if (i % 8 == 0) tally(w.try_alloc({64}, dist::DType::UInt8).status(), {});
            }
            for (const dist::Future &f : mine) tally(f.try_wait().status(), {});
        };
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < 4; t++) threads.emplace_back(hammer, t * 1000);
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 15 * round));
        expect_status(w.shutdown(), DIST_OK, "shutdown while 4 threads dispatch, wait, scope and alloc");
        stop = true;
        for (std::thread &t : threads) t.join();
        check(unexpected.load() == 0 && refused.load() > 0,
              std::to_string(calls.load()) + " calls from 4 threads across the shutdown: " +
                  std::to_string(refused.load()) + " refused with a status, none unexpected");
    }

    // An untimed wait on a task that passed task_timeout_ms returns its
    // TIMEOUT (the waits go in slices, and a slice's TIMEOUT is not the task's).
    {
        dist::Worker w(dist::Options().task_timeout(150ms));
        std::fflush(stdout);
        (void)w.spawn(dist::Sub, [](const dist::Call &) { std::this_thread::sleep_for(5s); });
        const Clock::time_point t0 = Clock::now();
        dist::Future f = w.dispatch(dist::Task(dist::Sub, 1));
        expect_status(f.try_wait(), DIST_ERR_TIMEOUT, "an untimed wait on a task that overran task_timeout");
        check(ms_since(t0) < 3000, "it returned after " + std::to_string(ms_since(t0)) + " ms");
        expect_status(f.try_wait_for(10s), DIST_ERR_TIMEOUT, "and a timed one, at once");
        check(ms_since(t0) < 3000, "(after " + std::to_string(ms_since(t0)) + " ms)");
        (void)w.try_drain();
        (void)w.shutdown();
    }
}

void concurrent_shutdowns() {
    std::printf("== two threads shut one Worker down at once\n");
    for (int round = 0; round < 5; round++) {
        dist::Worker w;
        std::atomic<int> ran{0};
        w.add_thread(dist::Sub, [&ran](const dist::Call &) {
            std::this_thread::sleep_for(100ms);
            ran++;
        });
        w.dispatch(dist::Task(dist::Sub, 1));  // the first shutdown finishes it: the two overlap
        std::atomic<int> ready{0};
        dist::Status got[2];
        auto shut = [&](int k) {
            ready++;
            while (ready.load() < 2) std::this_thread::yield();
            got[k] = w.shutdown();
        };
        std::thread a(shut, 0), b(shut, 1);
        a.join();
        b.join();
        const int first = got[0].ok() ? 0 : 1;
        if (round == 0 || !got[first].ok() || got[1 - first].status() != DIST_ERR_SHUT_DOWN) {
            expect_status(got[first], DIST_OK, "the first shutdown");
            expect_status(got[1 - first], DIST_ERR_SHUT_DOWN, "the second, concurrent one", "already shutting down");
        }
        if (ran.load() != 1 || w) fail("round " + std::to_string(round) + ": the task did not run or w is not empty");
        expect_status(w.shutdown(), DIST_OK, "a later shutdown is a no-op");
    }
    std::printf("ok: 5 rounds: one shutdown finished the work, the other returned at once\n");

    // Shut down on one thread, destroyed on another.
    auto owned = std::make_unique<dist::Worker>();
    owned->add_thread(dist::Sub, [](const dist::Call &) { std::this_thread::sleep_for(50ms); });
    owned->dispatch(dist::Task(dist::Sub, 1));
    dist::Status early;
    std::thread t([&] { early = owned->shutdown(); });
    t.join();
    expect_status(early, DIST_OK, "shutdown on another thread");
    owned.reset();
    std::printf("ok: the destructor of a Worker shut down elsewhere does nothing\n");
}

void scope_order() {
    std::printf("== Scopes end innermost first\n");
    dist::Worker w(dist::Options().heap_ring_size(1 << 20));
    w.add_thread(dist::Sub, [](const dist::Call &) {});
    {
        dist::Scope outer = w.scope();
        dist::Scope inner = w.scope();
        expect_status(outer.end(), DIST_ERR_BAD_STATE, "ending the outer Scope while an inner one is open",
                      "scopes end innermost first: 1 scope(s) opened inside this one are still open");
        check(outer.active() && inner.active(), "the refused end() changed nothing");
        expect_status(inner.end(), DIST_OK, "the inner Scope ends");
        expect_status(outer.end(), DIST_OK, "then the outer one");
        expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE, "no scope is left open");
    }
    {
        std::vector<dist::Scope> v;
        for (int i = 0; i < 3; i++) v.push_back(w.scope());
        v.clear();  // destroys front to back
        expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE,
               "a vector of 3 Scopes cleared front to back ended all 3");
    }
    {
        std::optional<dist::Scope> outer(w.scope());
        dist::Scope inner = w.scope();
        outer.reset();  // not the innermost: its scope ends after `inner`
        check(inner.active(), "destroying the outer Scope first left the inner one open");
        std::vector<dist::Scope> more;
        for (int i = 0; i < DIST_MAX_SCOPE_DEPTH - 2; i++) more.push_back(w.scope());
        expect(dist_worker_scope_begin(w.get()), DIST_ERR_INVALID_ARGUMENT,
               "the library still has the outer scope open (62 more made it 64 deep)");
        more.clear();
        expect_status(inner.end(), DIST_OK, "ending the inner Scope");
        expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE, "ended the outer one after it");
    }
    {
        dist::Scope a = w.scope();
        dist::Scope b = w.scope();
        a = std::move(b);  // a's own (outer) scope is left to end after b's
        check(a.active() && !b.active(), "a Scope assigned from an inner one holds it");
        expect_status(a.end(), DIST_OK, "and ends it");
        expect(dist_worker_scope_end(w.get()), DIST_ERR_BAD_STATE, "then the outer one ended too");
    }
    {
        dist::Scope s = w.scope();
        dist::Worker w2 = std::move(w);
        expect_status(s.end(), DIST_OK, "a Scope ends after its Worker was moved");
        w = std::move(w2);
    }
    // A scope opened in a callable nests inside the host's: the host's may
    // not end before it.
    {
        dist::Worker cw(dist::Options().heap_ring_size(1 << 20));
        std::optional<dist::Scope> held;
        dist::Worker *cwp = &cw;
        cw.add_thread(dist::Sub, [cwp, &held](const dist::Call &call) {
            if (call.callable() == 1) held.emplace(cwp->scope());
            else held.reset();
        });
        dist::Scope host = cw.scope();
        cw.dispatch(dist::Task(dist::Sub, 1)).wait();
        expect_status(host.end(), DIST_ERR_BAD_STATE, "the host's Scope while a callable's is open", "innermost first");
        cw.dispatch(dist::Task(dist::Sub, 2)).wait();
        expect_status(host.end(), DIST_OK, "and once the callable ended its own");
        expect_status(cw.shutdown(), DIST_OK, "shutdown");
    }
    expect_status(w.shutdown(), DIST_OK, "shutdown");
}

}  // namespace

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    version_and_options();
    errors();
    group_task();
    exceptions_in_callables();
    spawned_children();
    scopes();
    wait_with_timeout();
    caller_child();
    levels();
    empty_workers();
    lifetimes();
    concurrent_shutdowns();
    scope_order();
    std::printf("cpp_api: all checks passed (C++ %ld, library %s)\n", static_cast<long>(__cplusplus),
                std::string(dist::version()).c_str());
    return 0;
}
