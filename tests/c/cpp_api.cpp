// cpp_api: the C header used from C++17.
//
// Proves: dist_worker.h compiles as C++ (extern "C", no C-only constructs)
// and links; a move-only RAII owner calls dist_worker_shutdown exactly once;
// a group task built from a std::vector<DistTaskArgs> runs one member on
// every worker, each with its own args; a static member function serves as
// the callable; statuses map to names and failures are reported.
#include "dist_worker.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

static_assert(sizeof(DistTensor) == 40, "DistTensor is 40 bytes on the wire");
static_assert(std::is_trivially_copyable<DistTensor>::value, "DistTensor is trivially copyable");
static_assert(std::is_same<DistStatus, int32_t>::value, "DistStatus is int32");

namespace {

[[noreturn]] void fail(const std::string &what) {
    std::fprintf(stderr, "FAIL: %s\n  last error message: \"%s\"\n", what.c_str(), dist_last_error_message());
    std::exit(1);
}

void expect(DistStatus got, DistStatus want, const char *what) {
    if (got != want)
        fail(std::string(what) + " returned " + dist_status_str(got) + ", expected " + dist_status_str(want));
    std::printf("ok: %s -> %s\n", what, dist_status_str(got));
}

// Move-only owner of a DistWorker.
class Worker {
public:
    Worker() {
        DistWorkerOptions o;
        dist_worker_options_init(&o);
        DistStatus st = dist_worker_create(&o, &w_);
        if (st != DIST_OK) throw std::runtime_error(std::string("dist_worker_create: ") + dist_last_error_message());
    }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;
    Worker(Worker &&o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
    Worker &operator=(Worker &&o) noexcept {
        if (this != &o) {
            reset();
            w_ = std::exchange(o.w_, nullptr);
        }
        return *this;
    }
    ~Worker() { reset(); }

    // Explicit shutdown, reporting its status; the destructor then does nothing.
    DistStatus shutdown() { return dist_worker_shutdown(std::exchange(w_, nullptr)); }
    DistWorker *get() const { return w_; }

private:
    void reset() {
        if (w_) (void)dist_worker_shutdown(std::exchange(w_, nullptr));
    }
    DistWorker *w_ = nullptr;
};

constexpr int kWorkers = 4;
constexpr uint64_t kFailing = 0xBAD;

struct Registry {
    std::atomic<int> member_runs[kWorkers];
    std::atomic<int> total{0};

    // A plain static function: no lambda, no capture, C linkage-compatible signature.
    static int32_t serve(void *user, uint64_t callable, const DistTaskView *args, const DistCallConfig *config) {
        auto *self = static_cast<Registry *>(user);
        if (callable == kFailing) return 9;
        if (args->scalar_count != 1 || args->tensor_count != 1) return 1;
        uint64_t member = args->scalars[0];
        if (member >= kWorkers) return 2;
        if (args->tensors[0].data != 0x5000 + member || args->tensors[0].shapes[0] != member + 1) return 3;
        if (config->block_dim != 8 || !config->enable_profiling) return 4;
        self->member_runs[member].fetch_add(1);
        self->total.fetch_add(1);
        return 0;
    }
};

}  // namespace

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    static Registry reg;
    for (auto &r : reg.member_runs) r.store(0);

    Worker worker;
    for (int i = 0; i < kWorkers; i++)
        expect(dist_worker_add_thread(worker.get(), DIST_WORKER_NEXT_LEVEL, &Registry::serve, &reg), DIST_OK,
               "dist_worker_add_thread");

    // Move the owner: only the destination shuts down.
    Worker moved = std::move(worker);
    if (worker.get() != nullptr || moved.get() == nullptr) fail("move did not transfer ownership");
    std::printf("ok: moved-from owner is empty\n");

    std::vector<DistTensor> tensors(kWorkers);
    std::vector<uint64_t> scalars(kWorkers);
    std::vector<DistTaskArgs> members(kWorkers);
    const int kRounds = 50;
    for (int round = 0; round < kRounds; round++) {
        for (int m = 0; m < kWorkers; m++) {
            tensors[m] = DistTensor{};
            tensors[m].data = 0x5000 + static_cast<uint64_t>(m);
            tensors[m].shapes[0] = static_cast<uint32_t>(m + 1);
            tensors[m].ndims = 1;
            tensors[m].dtype = DIST_BFLOAT16;
            scalars[m] = static_cast<uint64_t>(m);
            members[m] = DistTaskArgs{&tensors[m], nullptr, 1, &scalars[m], 1};
        }
        DistTask task{};
        task.worker_type = DIST_WORKER_NEXT_LEVEL;
        task.callable = 42;
        task.config = DistCallConfig{8, 3, true, false};
        task.args = members.data();
        task.group_size = static_cast<uint32_t>(members.size());
        DistTaskId id = 0;
        DistStatus st = dist_worker_dispatch(moved.get(), &task, &id);
        if (st != DIST_OK || id == 0) fail("group dispatch");
        st = dist_worker_wait(moved.get(), id);
        if (st != DIST_OK) fail(std::string("group task wait: ") + dist_status_str(st));
    }
    std::printf("ok: %d group tasks of %d members each succeeded\n", kRounds, kWorkers);
    for (int m = 0; m < kWorkers; m++)
        if (reg.member_runs[m].load() != kRounds)
            fail("member " + std::to_string(m) + " ran " + std::to_string(reg.member_runs[m].load()) + " times");
    std::printf("ok: every member ran once per group with its own args\n");

    DistTask bad{};
    bad.worker_type = DIST_WORKER_NEXT_LEVEL;
    bad.callable = kFailing;
    bad.config = DistCallConfig{24, 3, false, false};
    DistTaskId id = 0;
    expect(dist_worker_dispatch(moved.get(), &bad, &id), DIST_OK, "dispatch of a failing task");
    expect(dist_worker_wait(moved.get(), id), DIST_ERR_TASK_FAILED, "wait on the failing task");
    if (std::string(dist_last_error_message()).find(" 9") == std::string::npos) fail("message lacks code 9");
    expect(dist_worker_drain(moved.get()), DIST_ERR_TASK_FAILED, "drain");
    expect(dist_worker_drain(moved.get()), DIST_OK, "second drain");
    bad.worker_type = static_cast<DistWorkerType>(7);
    expect(dist_worker_dispatch(moved.get(), &bad, &id), DIST_ERR_INVALID_ARGUMENT, "dispatch with worker type 7");

    expect(moved.shutdown(), DIST_OK, "shutdown through the owner");
    if (moved.get() != nullptr) fail("owner still holds the worker after shutdown");

    {
        Worker scoped;  // destroyed without an explicit shutdown
        expect(dist_worker_add_thread(scoped.get(), DIST_WORKER_SUB, &Registry::serve, &reg), DIST_OK,
               "add_thread on a scoped owner");
    }
    std::printf("ok: a scoped owner shut down in its destructor\n");
    std::printf("cpp_api: all checks passed (library %d.%d.%d)\n", DIST_WORKER_VERSION_MAJOR, DIST_WORKER_VERSION_MINOR,
                DIST_WORKER_VERSION_PATCH);
    return 0;
}
