/* levels: a three-level tree of dist-worker, driven from C.
 *
 *   L4  this process (the top)
 *   |     NEXT_LEVEL workers 0 and 1: the two L3 levels below
 *   |     SUB worker 0: a pool thread that does the final reduce
 *   +-- L3 #0  a process forked by dist_worker_spawn_level
 *   |     SUB workers 0 and 1: child processes it forks (the leaves)
 *   |     NEXT_LEVEL worker 0: a pool thread (stands in for a chip)
 *   +-- L3 #1  the same
 *
 * The top puts v = 1..1000 on its heap. Each L3 gets one half of v (placed
 * with dist_worker_dispatch_on); its orchestration function splits that half
 * across its two leaves, which sum their quarters straight into the top's
 * memory, and its chip thread adds the two. The top's SUB thread then adds
 * the levels' results: 500500.
 *
 * No data is copied on the way down or up: the top's heap is MAP_SHARED and
 * every process below inherits it at the same address.
 *
 * Then a leaf fails on purpose, to show how a failure comes up with its
 * path, and the top shuts the whole tree down. */
#include <dist_worker.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 1000   /* elements of v */
#define LEVELS 2 /* L3 levels under the top */

/* Callables. Any 64-bit value works; each worker decides what it means. */
#define L3_SUM 0x1     /* top -> L3: sum a slice of v (read by l3_orch) */
#define L3_FAIL 0x2    /* top -> L3: run a leaf task that fails */
#define LEAF_SUM 0x10  /* L3 -> its SUB children */
#define LEAF_FAIL 0x11 /* L3 -> its SUB children: fail on purpose */
#define CHIP_ADD 0x20  /* L3 -> its NEXT_LEVEL thread */
#define TOP_ADD 0x30   /* top -> its SUB thread */

static uint64_t *u64s(const DistTensor *t) { return (uint64_t *)(uintptr_t)t->data; }

/* A 1-d tensor of n uint64 at p (a view into memory allocated before). */
static DistTensor at(uint64_t *p, uint32_t n)
{
    DistTensor t = {(uint64_t)(uintptr_t)p, {n}, 1, DIST_UINT64};
    return t;
}

/* Submits a task with n tensors. on >= 0 places it on worker `on` of its
   type (registration order within the type); on < 0 lets any idle one run it. */
static DistStatus submit(DistWorker *w, DistWorkerType type, uint64_t callable, const DistTensor *t,
                         const DistTensorArgType *tags, uint32_t n, int on, DistTaskId *id)
{
    DistTaskArgs args = {t, tags, n, NULL, 0};
    DistTask task = {type, callable, {24, 3, false, false}, &args, 1};
    if (on < 0) return dist_worker_dispatch(w, &task, id);
    uint32_t index = (uint32_t)on;
    return dist_worker_dispatch_on(w, &task, &index, id);
}

/* What every worker runs, at every depth: the last tensor gets the sum of
   all elements of the others. Returns 0, or an error code. */
static int32_t add_up(void *user, uint64_t callable, const DistTaskView *args, const DistCallConfig *config)
{
    (void)user;
    (void)config;
    if (callable == LEAF_FAIL) {
        /* This text travels up with the error code, through every level. */
        dist_child_set_error_message("cannot read block 7: checksum mismatch");
        return 5;
    }
    if ((callable != LEAF_SUM && callable != CHIP_ADD && callable != TOP_ADD) || args->tensor_count < 2)
        return 1;
    uint64_t sum = 0;
    for (int32_t k = 0; k + 1 < args->tensor_count; k++)
        for (uint32_t i = 0; i < args->tensors[k].shapes[0]; i++) sum += u64s(&args->tensors[k])[i];
    u64s(&args->tensors[args->tensor_count - 1])[0] = sum;
    return 0;
}

/* Runs once in each L3's own process, before it serves: registers the
   level's workers. No thread of the level exists yet, so it may fork. */
static int32_t l3_setup(void *user, DistWorker *l3)
{
    (void)user;
    for (int j = 0; j < 2; j++)
        if (dist_worker_spawn(l3, DIST_WORKER_SUB, add_up, NULL, NULL) != DIST_OK) return 1;
    return dist_worker_add_thread(l3, DIST_WORKER_NEXT_LEVEL, add_up, NULL) == DIST_OK ? 0 : 2;
}

/* Runs one outer task in an L3's process: submits a DAG to the level and
   returns. The library then drains the level; the outer task fails if this
   returns non-zero or if any task below failed. */
static int32_t l3_orch(void *user, DistWorker *l3, uint64_t callable, const DistTaskView *args,
                       const DistCallConfig *config)
{
    (void)user;
    (void)config;
    const DistTensorArgType in = DIST_ARG_INPUT, out = DIST_ARG_OUTPUT_EXISTING;
    if (callable == L3_FAIL) return submit(l3, DIST_WORKER_SUB, LEAF_FAIL, NULL, NULL, 0, 0, NULL) != DIST_OK;
    if (callable != L3_SUM || args->tensor_count != 3) return 2;

    /* The outer task's tensors, all in the top's heap: [0] the slice to sum,
       [1] two scratch slots, [2] where the level's result goes. */
    uint64_t *slice = u64s(&args->tensors[0]), *scratch = u64s(&args->tensors[1]);
    uint32_t n = args->tensors[0].shapes[0], half = n / 2;

    /* Leaf j (SUB child j) sums its half of the slice into scratch[j]. */
    for (int j = 0; j < 2; j++) {
        DistTensor t[2] = {at(slice + j * half, j ? n - half : half), at(scratch + j, 1)};
        DistTensorArgType tags[2] = {in, out};
        if (submit(l3, DIST_WORKER_SUB, LEAF_SUM, t, tags, 2, j, NULL) != DIST_OK) return 3;
    }
    /* The chip reads both slots (INPUT), so it runs after both leaves. */
    DistTensor t[3] = {at(scratch, 1), at(scratch + 1, 1), args->tensors[2]};
    DistTensorArgType tags[3] = {in, in, out};
    return submit(l3, DIST_WORKER_NEXT_LEVEL, CHIP_ADD, t, tags, 3, -1, NULL) == DIST_OK ? 0 : 4;
}

/* Prints a failed call; returns 1 (one more error). */
static int failed(const char *what, DistStatus s)
{
    fprintf(stderr, "%s: %s (%s)\n", what, dist_status_str(s), dist_last_error_message());
    return 1;
}

/* The sum: v = 1..N, one half per level, then a reduce at the top. */
static int run_sum(DistWorker *top, const int32_t *pid)
{
    const DistTensorArgType in = DIST_ARG_INPUT, out = DIST_ARG_OUTPUT_EXISTING;
    const uint32_t n = N, n_scratch = 2 * LEVELS, n_parts = LEVELS, one = 1;
    DistTensor v, scratch, part, total;
    DistTaskId reduce;
    DistStatus s;

    /* Memory allocated in a scope lives until the scope ends and its tasks are done. */
    if ((s = dist_worker_scope_begin(top)) != DIST_OK) return failed("scope_begin", s);
    if ((s = dist_worker_alloc(top, &n, 1, DIST_UINT64, &v)) != DIST_OK ||
        (s = dist_worker_alloc(top, &n_scratch, 1, DIST_UINT64, &scratch)) != DIST_OK ||
        (s = dist_worker_alloc(top, &n_parts, 1, DIST_UINT64, &part)) != DIST_OK ||
        (s = dist_worker_alloc(top, &one, 1, DIST_UINT64, &total)) != DIST_OK)
        return failed("alloc", s);
    for (uint32_t i = 0; i < N; i++) u64s(&v)[i] = i + 1; /* plain memory: write it directly */

    /* Level k sums its half of v into part[k], using scratch[2k..2k+2). */
    for (int k = 0; k < LEVELS; k++) {
        DistTensor t[3] = {at(u64s(&v) + k * (N / LEVELS), N / LEVELS), at(u64s(&scratch) + 2 * k, 2),
                           at(u64s(&part) + k, 1)};
        DistTensorArgType tags[3] = {in, out, out};
        if ((s = submit(top, DIST_WORKER_NEXT_LEVEL, L3_SUM, t, tags, 3, k, NULL)) != DIST_OK)
            return failed("dispatch to L3", s);
    }
    /* The reduce reads both parts, so the engine runs it after both levels. */
    DistTensor r[3] = {at(u64s(&part), 1), at(u64s(&part) + 1, 1), total};
    DistTensorArgType rtags[3] = {in, in, out};
    if ((s = submit(top, DIST_WORKER_SUB, TOP_ADD, r, rtags, 3, -1, &reduce)) != DIST_OK)
        return failed("dispatch reduce", s);
    if ((s = dist_worker_wait(top, reduce)) != DIST_OK) return failed("reduce", s);

    for (int k = 0; k < LEVELS; k++)
        printf("L3 #%d (pid %d): leaves %" PRIu64 " + %" PRIu64 " = %" PRIu64 "\n", k, (int)pid[k],
               u64s(&scratch)[2 * k], u64s(&scratch)[2 * k + 1], u64s(&part)[k]);
    uint64_t sum = u64s(&total)[0], want = (uint64_t)N * (N + 1) / 2;
    printf("sum = %" PRIu64 " (expected %" PRIu64 ")\n", sum, want);

    /* Ending the scope and draining hand the memory back to the heap. */
    if ((s = dist_worker_scope_end(top)) != DIST_OK) return failed("scope_end", s);
    if ((s = dist_worker_drain(top)) != DIST_OK) return failed("drain", s);
    return sum == want ? 0 : 1;
}

/* A leaf under L3 #1 fails: the outer wait reports it with its path. */
static int run_failure(DistWorker *top, const int32_t *pid)
{
    DistTaskId id;
    DistStatus s = submit(top, DIST_WORKER_NEXT_LEVEL, L3_FAIL, NULL, NULL, 0, 1, &id);
    if (s != DIST_OK) return failed("dispatch to L3", s);
    s = dist_worker_wait(top, id);
    /* The message belongs to this thread's last failing call: read it now. */
    const char *m = dist_last_error_message();
    printf("failure from the bottom: %s\n  %s\n", dist_status_str(s), m);

    char where[64];
    snprintf(where, sizeof where, "L3 worker 1 (child pid %d)", (int)pid[1]);
    int errors = 0;
    if (s != DIST_ERR_TASK_FAILED || !strstr(m, where) || !strstr(m, "checksum mismatch")) {
        fprintf(stderr, "expected DIST_ERR_TASK_FAILED through %s with the leaf's message\n", where);
        errors++;
    }
    /* A drain reports the first failure since the last drain: this one. */
    if ((s = dist_worker_drain(top)) != DIST_ERR_TASK_FAILED) errors += failed("drain after the failure", s);
    return errors;
}

int main(void)
{
    DistWorker *top = NULL;
    DistWorkerOptions o;
    DistStatus s;
    int32_t pid[LEVELS];
    int errors = 0;

    dist_worker_options_init(&o);
    o.level = 4; /* levels spawned with options NULL get level 4 - 1 = 3 */
    if ((s = dist_worker_create(&o, &top)) != DIST_OK) return failed("create", s);

    /* Build the tree before the top starts: spawning forks, which is safe
       only while the library has no thread. Flush so no child inherits
       buffered output. Each spawned level runs l3_setup in its own process. */
    fflush(stdout);
    for (int k = 0; k < LEVELS; k++)
        if ((s = dist_worker_spawn_level(top, NULL, l3_setup, l3_orch, NULL, &pid[k])) != DIST_OK)
            return failed("spawn_level", s);
    if ((s = dist_worker_add_thread(top, DIST_WORKER_SUB, add_up, NULL)) != DIST_OK)
        return failed("add_thread", s);
    /* Start fails with DIST_ERR_CHILD_DIED if a level's setup failed. */
    if ((s = dist_worker_start(top)) != DIST_OK) {
        failed("start", s);
        dist_worker_shutdown(top);
        return 1;
    }
    printf("L4 (pid %d) drives L3 levels pid %d and %d, each with 2 SUB children and a NEXT_LEVEL thread\n",
           (int)getpid(), (int)pid[0], (int)pid[1]);

    errors += run_sum(top, pid);
    errors += run_failure(top, pid);

    /* Shut down the top only: it owns everything below. Each level shuts
       down its own workers and reaps its children; the top reaps the levels. */
    if ((s = dist_worker_shutdown(top)) != DIST_OK) errors += failed("shutdown", s);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "a child of the top outlived the shutdown\n");
        errors++;
    }
    for (int k = 0; k < LEVELS; k++)
        if (kill(pid[k], 0) == 0 || errno != ESRCH) {
            fprintf(stderr, "level process %d outlived the shutdown\n", (int)pid[k]);
            errors++;
        }

    printf("%s\n", errors ? "FAILED" : "ok: the tree is shut down, no process left");
    return errors ? 1 : 0;
}
