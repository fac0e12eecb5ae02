/* c_host: a host process driving one level of dist-worker from C.
 *
 * Two SUB workers run on pool threads of this process; two NEXT_LEVEL
 * workers run in child processes forked by dist_worker_spawn. Each task
 * gets an input tensor, an output tensor and two scalars (its index and a
 * factor); the callable checks them and writes in[i] * factor to out[i].
 *
 * Children write into memory the parent reads, so the arrays live in one
 * MAP_SHARED mapping made before the fork: parent and children see the same
 * bytes at the same address.
 *
 * Then a small DAG: produce -> two partial sums -> reduce. The engine orders
 * the tasks from their tensor tags alone, and the intermediates come from its
 * own MAP_SHARED heap ring (an OUTPUT with data 0, or dist_worker_alloc), so
 * children and the parent see them at the same address too. */
#include <dist_worker.h>

#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#define TASKS 1000
#define FACTOR 3
#define WORKERS 4
#define SCALE_ID 1                 /* SUB: a small callable id */
#define SCALE_HANDLE 0x5ca1e0000ULL /* NEXT_LEVEL: an opaque handle */
#define DAG_N 1000                  /* elements the DAG sums */
#define DAG_PRODUCE 0xda90001ULL    /* DAG callables (any 64-bit value works for both types) */
#define DAG_PARTIAL 0xda90002ULL
#define DAG_REDUCE 0xda90003ULL

struct shared {
    uint64_t in[TASKS];
    uint64_t out[TASKS];
    int32_t ran_on[TASKS]; /* index into `workers` of who ran task i */
};

static struct shared *shm;

/* Passed to each worker as `user`: who it is, for the report. */
struct worker_info {
    int32_t index;
    const char *name;
};
static const struct worker_info workers[WORKERS] = {
    {0, "sub thread 0"}, {1, "sub thread 1"}, {2, "next-level child 0"}, {3, "next-level child 1"},
};

static uint64_t *u64s(const DistTensor *t) { return (uint64_t *)(uintptr_t)t->data; }

/* The DAG's steps: PRODUCE fills out[i] = i + 1; PARTIAL sums in[first ..
   first + count) into out[0]; REDUCE writes a[0] + b[0] to out[0]. */
static int32_t dag_step(uint64_t callable, const DistTaskView *args)
{
    const DistTensor *t = args->tensors;
    uint64_t sum = 0;
    if (callable == DAG_PRODUCE && args->tensor_count == 1) {
        for (uint32_t i = 0; i < t[0].shapes[0]; i++) u64s(&t[0])[i] = i + 1;
    } else if (callable == DAG_PARTIAL && args->tensor_count == 2 && args->scalar_count == 2) {
        for (uint64_t i = 0; i < args->scalars[1]; i++) sum += u64s(&t[0])[args->scalars[0] + i];
        u64s(&t[1])[0] = sum;
    } else if (callable == DAG_REDUCE && args->tensor_count == 3) {
        u64s(&t[2])[0] = u64s(&t[0])[0] + u64s(&t[1])[0];
    } else {
        return 4;
    }
    return 0;
}

/* The callable. Returns 0 on success, a non-zero error code otherwise. */
static int32_t scale(void *user, uint64_t callable, const DistTaskView *args,
                     const DistCallConfig *config)
{
    const struct worker_info *me = user;
    (void)config;
    if (callable >= DAG_PRODUCE && callable <= DAG_REDUCE) return dag_step(callable, args);
    if (callable != SCALE_ID && callable != SCALE_HANDLE) return 1;
    if (args->tensor_count != 2 || args->scalar_count != 2) return 2;
    const DistTensor *in = &args->tensors[0], *out = &args->tensors[1];
    uint64_t i = args->scalars[0], factor = args->scalars[1];
    if (i >= TASKS || in->ndims != 1 || in->shapes[0] != 1 || in->dtype != DIST_UINT64 ||
        out->dtype != DIST_UINT64 || in->data != (uint64_t)(uintptr_t)&shm->in[i])
        return 3;
    *(uint64_t *)(uintptr_t)out->data = *(const uint64_t *)(uintptr_t)in->data * factor;
    shm->ran_on[i] = me->index;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Prints a failed call and tells main to give up. */
static int failed(const char *what, DistStatus s)
{
    fprintf(stderr, "%s: %s (%s)\n", what, dist_status_str(s), dist_last_error_message());
    return 1;
}

/* Dispatches one task with n tensors (tagged) and ns scalars. */
static DistStatus submit(DistWorker *w, DistWorkerType type, uint64_t callable, const DistTensor *t,
                         const DistTensorArgType *tags, uint32_t n, const uint64_t *scalars, uint32_t ns,
                         DistTaskId *id)
{
    DistTaskArgs args = {t, tags, n, scalars, ns};
    DistTask task = {type, callable, {24, 3, false, false}, &args, 1};
    return dist_worker_dispatch(w, &task, id);
}

/* produce (child) -> partial sums (child, thread) -> reduce (thread), in a scope. */
static int run_dag(DistWorker *w)
{
    const DistTensorArgType in = DIST_ARG_INPUT, out = DIST_ARG_OUTPUT, existing = DIST_ARG_OUTPUT_EXISTING;
    const uint32_t one = 1;
    DistTaskId produce, reduce;
    DistStatus s;

    if ((s = dist_worker_scope_begin(w)) != DIST_OK) return failed("scope_begin", s);
    /* OUTPUT with data 0: the engine allocates v and tells us where. */
    DistTensor v = {0, {DAG_N}, 1, DIST_UINT64};
    if ((s = submit(w, DIST_WORKER_NEXT_LEVEL, DAG_PRODUCE, &v, &out, 1, NULL, 0, &produce)) != DIST_OK)
        return failed("dispatch produce", s);
    if ((s = dist_worker_task_tensor(w, produce, 0, 0, &v)) != DIST_OK) return failed("task_tensor", s);
    /* Each consumer reads half of v (INPUT: waits for produce) into a partial
       from dist_worker_alloc (OUTPUT_EXISTING). */
    DistTensor part[2];
    for (int k = 0; k < 2; k++) {
        if ((s = dist_worker_alloc(w, &one, 1, DIST_UINT64, &part[k])) != DIST_OK) return failed("alloc", s);
        DistTensor t[2] = {v, part[k]};
        DistTensorArgType tags[2] = {in, existing};
        uint64_t range[2] = {(uint64_t)k * DAG_N / 2, DAG_N / 2};
        s = submit(w, k ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL, DAG_PARTIAL, t, tags, 2, range, 2, NULL);
        if (s != DIST_OK) return failed("dispatch partial", s);
    }
    /* reduce waits for both partials; its result is another engine-allocated OUTPUT. */
    DistTensor r[3] = {part[0], part[1], {0, {1}, 1, DIST_UINT64}};
    DistTensorArgType rtags[3] = {in, in, out};
    if ((s = submit(w, DIST_WORKER_SUB, DAG_REDUCE, r, rtags, 3, NULL, 0, &reduce)) != DIST_OK)
        return failed("dispatch reduce", s);
    if ((s = dist_worker_wait(w, reduce)) != DIST_OK) return failed("reduce", s);
    if ((s = dist_worker_task_tensor(w, reduce, 0, 2, &r[2])) != DIST_OK) return failed("task_tensor", s);
    uint64_t sum = u64s(&r[2])[0], want = (uint64_t)DAG_N * (DAG_N + 1) / 2;
    printf("dag: produce -> 2 partial sums -> reduce = %" PRIu64 " (expected %" PRIu64 "), v at %#" PRIx64 "\n", sum,
           want, v.data);
    /* Ending the scope and draining hand the heap memory back. */
    if ((s = dist_worker_scope_end(w)) != DIST_OK) return failed("scope_end", s);
    if ((s = dist_worker_drain(w)) != DIST_OK) return failed("drain", s);
    return sum == want ? 0 : 1;
}

int main(void)
{
    DistWorker *w = NULL;
    DistStatus s;

    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < TASKS; i++) { shm->in[i] = (uint64_t)i + 1; shm->ran_on[i] = -1; }

    if ((s = dist_worker_create(NULL, &w)) != DIST_OK) return failed("create", s);

    /* Register every worker before the pool starts: forking is safe only
       while the library has no thread. Flush so children inherit no output. */
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        int32_t pid = 0;
        if ((s = dist_worker_add_thread(w, DIST_WORKER_SUB, scale, (void *)&workers[k])) != DIST_OK)
            return failed("add_thread", s);
        if ((s = dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, scale, (void *)&workers[2 + k], &pid)) != DIST_OK)
            return failed("spawn", s);
        printf("spawned %s as pid %d\n", workers[2 + k].name, pid);
    }
    if ((s = dist_worker_start(w)) != DIST_OK) return failed("start", s);

    /* Dispatch: even tasks to the SUB pool, odd ones to the NEXT_LEVEL pool.
       dispatch copies tensors, tags and scalars, so locals are fine. */
    static DistTaskId ids[TASKS];
    double t0 = now_s();
    for (int i = 0; i < TASKS; i++) {
        DistTensor t[2] = {
            {(uint64_t)(uintptr_t)&shm->in[i], {1}, 1, DIST_UINT64},
            {(uint64_t)(uintptr_t)&shm->out[i], {1}, 1, DIST_UINT64},
        };
        DistTensorArgType tags[2] = {DIST_ARG_INPUT, DIST_ARG_OUTPUT_EXISTING};
        uint64_t scalars[2] = {(uint64_t)i, FACTOR};
        DistTaskArgs args = {t, tags, 2, scalars, 2};
        int sub = i % 2 == 0;
        DistTask task = {sub ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL,
                         sub ? SCALE_ID : SCALE_HANDLE,
                         {24, 3, false, false}, &args, 1};
        if ((s = dist_worker_dispatch(w, &task, &ids[i])) != DIST_OK) return failed("dispatch", s);
    }

    /* Every task's own status, then drain: the first failure since the last drain. */
    int errors = 0;
    for (int i = 0; i < TASKS; i++)
        if ((s = dist_worker_wait(w, ids[i])) != DIST_OK) errors += failed("task", s);
    if ((s = dist_worker_drain(w)) != DIST_OK) errors += failed("drain", s);
    double elapsed = now_s() - t0;

    /* Check the results and count who ran what. */
    int per_worker[WORKERS] = {0};
    for (int i = 0; i < TASKS; i++) {
        int on = shm->ran_on[i];
        int want_sub = i % 2 == 0;
        if (shm->out[i] != shm->in[i] * FACTOR || on < 0 || on >= WORKERS || (on < 2) != want_sub) {
            fprintf(stderr, "task %d: out=%" PRIu64 " ran_on=%d\n", i, shm->out[i], on);
            errors++;
            continue;
        }
        per_worker[on]++;
    }
    for (int k = 0; k < WORKERS; k++) printf("%-20s ran %4d tasks\n", workers[k].name, per_worker[k]);
    printf("%d tasks in %.3f s: %.0f tasks/s\n", TASKS, elapsed, TASKS / elapsed);

    errors += run_dag(w);

    /* Shutdown reaps the children and frees w. */
    if ((s = dist_worker_shutdown(w)) != DIST_OK) errors += failed("shutdown", s);
    munmap(shm, sizeof *shm);
    printf("%s\n", errors ? "FAILED" : "ok");
    return errors ? 1 : 0;
}
