/* pool_basic: tasks reach the right workers with their arguments intact,
 * in THREAD mode and in PROCESS mode (dist_worker_spawn), for both types.
 *
 * Proves:
 * 1. 1200 tasks (plus full-pool group tasks) on a mixed pool: every callable
 *    sees exactly the tensors (count, data, ndims, shapes, dtype), scalars,
 *    callable and config its task was dispatched with; every task runs once;
 *    results written by children land in MAP_SHARED memory mapped before the
 *    fork; a group as large as the pool runs once on every worker, threads and
 *    children alike.
 * 2. With a single worker of a type, tasks of that type run in dispatch order.
 * 3. A failing callable gives DIST_ERR_TASK_FAILED from wait and from drain,
 *    with a message naming the worker, the callable and the code; the next
 *    drain is DIST_OK and the pool stays usable; shutdown returns DIST_OK. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

#define NTASKS 1200
#define GROUP_EVERY 100 /* every 100th task is a group as large as its pool */
#define MAX_MEMBERS 8
#define MAX_TENSORS 6
#define NL_THREADS 2
#define NL_CHILDREN 2
#define SUB_THREADS 1
#define SUB_CHILDREN 1
#define ORDER_TASKS 400
#define NL_HANDLE_BASE 0xC0DE000000000000ull

/* Written by whoever runs the callable (thread or child): lives in MAP_SHARED memory. */
typedef struct {
    atomic_uint runs;
    int32_t pid;
    int32_t verdict; /* 0 = every field matched, else the first mismatching field */
    int32_t type;    /* worker type of the runner */
} Record;

typedef struct {
    Record rec[NTASKS][MAX_MEMBERS];
    atomic_uint next[2];
    uint64_t order[2][ORDER_TASKS];
} Shared;

static Shared *g_shared;

/* What the runner knows about itself; copied into children by fork. */
typedef struct {
    DistWorkerType type;
} Ctx;

/* ---- the deterministic description of task i, member m ---- */

static DistWorkerType task_type(uint32_t i) { return i % 3 == 0 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL; }
static int is_group(uint32_t i) { return i % GROUP_EVERY == GROUP_EVERY - 1; }
static uint32_t pool_size(DistWorkerType ty) {
    return ty == DIST_WORKER_SUB ? SUB_THREADS + SUB_CHILDREN : NL_THREADS + NL_CHILDREN;
}
static uint64_t task_callable(uint32_t i) {
    return task_type(i) == DIST_WORKER_SUB ? 1 + i % 50 : NL_HANDLE_BASE | i;
}
static DistCallConfig task_config(uint32_t i) {
    DistCallConfig c;
    memset(&c, 0, sizeof c);
    c.block_dim = 1 + (int32_t)(i % 48);
    c.aicpu_thread_num = (int32_t)(i % 7);
    c.enable_profiling = (i & 1) != 0;
    c.enable_dump_tensor = (i & 2) != 0;
    return c;
}
static uint32_t tensor_count(uint32_t i, uint32_t m) { return (i + m) % MAX_TENSORS; }
static uint32_t scalar_count(uint32_t i) { return 2 + i % 4; }
static DistTensor make_tensor(uint32_t i, uint32_t m, uint32_t k) {
    DistTensor t;
    memset(&t, 0, sizeof t);
    t.data = 0x10000000ull + (uint64_t)i * 0x1000 + m * 0x100 + k * 0x10;
    t.ndims = 1 + (i + k) % 5;
    for (uint32_t d = 0; d < 5; d++) t.shapes[d] = d < t.ndims ? i * 7 + k * 3 + d + 1 : 0xFFFFFFFFu;
    t.dtype = (uint8_t)((i + k) % 9);
    return t;
}
static uint64_t make_scalar(uint32_t i, uint32_t m, uint32_t j) {
    if (j == 0) return i;
    if (j == 1) return m;
    if (j == 2) return i % 2 ? UINT64_MAX : 0;
    return (uint64_t)i * 0x9E3779B97F4A7C15ull ^ j;
}

/* The callable of phase 1: checks everything it got against the description. */
static int32_t verify_task(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    const Ctx *ctx = user;
    if (a->scalar_count < 2 || a->scalars == NULL) return 1000;
    uint64_t i64 = a->scalars[0], m64 = a->scalars[1];
    if (i64 >= NTASKS || m64 >= MAX_MEMBERS) return 1001;
    uint32_t i = (uint32_t)i64, m = (uint32_t)m64;
    Record *r = &g_shared->rec[i][m];
    int verdict = 0;
    DistCallConfig want = task_config(i);
    if (ctx->type != task_type(i)) verdict = 1;
    else if (callable != task_callable(i)) verdict = 2;
    else if (c->block_dim != want.block_dim) verdict = 3;
    else if (c->aicpu_thread_num != want.aicpu_thread_num) verdict = 4;
    else if (c->enable_profiling != want.enable_profiling) verdict = 5;
    else if (c->enable_dump_tensor != want.enable_dump_tensor) verdict = 6;
    else if (a->tensor_count != (int32_t)tensor_count(i, m)) verdict = 7;
    else if (a->scalar_count != (int32_t)scalar_count(i)) verdict = 8;
    for (int32_t k = 0; verdict == 0 && k < a->tensor_count; k++) {
        DistTensor e = make_tensor(i, m, (uint32_t)k);
        const DistTensor *t = &a->tensors[k];
        if (t->data != e.data) verdict = 10;
        else if (t->ndims != e.ndims) verdict = 11;
        else if (t->dtype != e.dtype) verdict = 12;
        else if (memcmp(t->shapes, e.shapes, e.ndims * sizeof(uint32_t)) != 0) verdict = 13;
    }
    for (int32_t j = 0; verdict == 0 && j < a->scalar_count; j++)
        if (a->scalars[j] != make_scalar(i, m, (uint32_t)j)) verdict = 20;
    r->pid = getpid();
    r->verdict = verdict;
    r->type = ctx->type;
    atomic_fetch_add(&r->runs, 1);
    return verdict ? 500 + verdict : 0;
}

/* Builds the args of task i into caller storage and dispatches it. */
static DistTaskId dispatch_described(DistWorker *w, uint32_t i) {
    static DistTensor tensors[MAX_MEMBERS][MAX_TENSORS];
    static uint64_t scalars[MAX_MEMBERS][8];
    DistTaskArgs args[MAX_MEMBERS];
    uint32_t members = is_group(i) ? pool_size(task_type(i)) : 1;
    for (uint32_t m = 0; m < members; m++) {
        for (uint32_t k = 0; k < tensor_count(i, m); k++) tensors[m][k] = make_tensor(i, m, k);
        for (uint32_t j = 0; j < scalar_count(i); j++) scalars[m][j] = make_scalar(i, m, j);
        memset(&args[m], 0, sizeof args[m]);
        args[m].tensors = tensor_count(i, m) ? tensors[m] : NULL;
        args[m].tensor_count = tensor_count(i, m);
        args[m].scalars = scalars[m];
        args[m].scalar_count = scalar_count(i);
    }
    DistTask t;
    memset(&t, 0, sizeof t);
    t.worker_type = task_type(i);
    t.callable = task_callable(i);
    t.config = task_config(i);
    t.args = args;
    t.group_size = members;
    DistTaskId id = 0;
    EXPECT_OK(dist_worker_dispatch(w, &t, &id));
    CHECK(id != 0, "task %u got id 0", i);
    /* Dispatch copied everything: scribble over the caller's arrays. */
    memset(tensors, 0xEE, sizeof tensors);
    memset(scalars, 0xEE, sizeof scalars);
    return id;
}

static void phase_mixed_pool(void) {
    SECTION("1. 1200 tasks on NEXT_LEVEL (2 threads + 2 children) and SUB (1 thread + 1 child)");
    static Ctx nl = {DIST_WORKER_NEXT_LEVEL}, sub = {DIST_WORKER_SUB};
    DistWorker *w = NULL;
    int32_t pids[NL_CHILDREN + SUB_CHILDREN];
    EXPECT_OK(dist_worker_create(NULL, &w));
    for (int c = 0; c < NL_CHILDREN; c++)
        EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, verify_task, &nl, &pids[c]));
    for (int c = 0; c < SUB_CHILDREN; c++)
        EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, verify_task, &sub, &pids[NL_CHILDREN + c]));
    for (int c = 0; c < NL_CHILDREN + SUB_CHILDREN; c++)
        CHECK(pids[c] > 0 && pids[c] != getpid(), "spawn gave pid %d", pids[c]);
    for (int c = 0; c < NL_THREADS; c++) EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, verify_task, &nl));
    for (int c = 0; c < SUB_THREADS; c++) EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, verify_task, &sub));
    printf("ok: spawned children %d %d (NEXT_LEVEL) %d (SUB), added threads\n", pids[0], pids[1], pids[2]);

    static DistTaskId ids[NTASKS];
    for (uint32_t i = 0; i < NTASKS; i++) ids[i] = dispatch_described(w, i);
    printf("ok: dispatched %d tasks\n", NTASKS);
    for (uint32_t i = 0; i < NTASKS; i++) {
        DistStatus st = dist_worker_wait(w, ids[i]);
        CHECK(st == DIST_OK, "task %u: wait returned %s", i, dist_status_str(st));
    }
    EXPECT_OK(dist_worker_drain(w));
    printf("ok: every wait and the drain returned DIST_OK\n");

    int groups = 0;
    for (uint32_t i = 0; i < NTASKS; i++) {
        uint32_t members = is_group(i) ? pool_size(task_type(i)) : 1;
        int thread_runs = 0, child_runs[NL_CHILDREN + SUB_CHILDREN] = {0};
        for (uint32_t m = 0; m < MAX_MEMBERS; m++) {
            Record *r = &g_shared->rec[i][m];
            unsigned runs = atomic_load(&r->runs);
            if (m >= members) {
                CHECK(runs == 0, "task %u member %u should not exist but ran", i, m);
                continue;
            }
            CHECK(runs == 1, "task %u member %u ran %u times", i, m, runs);
            CHECK(r->verdict == 0, "task %u member %u: callable saw a wrong field (code %d)", i, m, r->verdict);
            CHECK(r->type == task_type(i), "task %u ran on a worker of type %d", i, r->type);
            if (r->pid == getpid()) thread_runs++;
            for (int c = 0; c < NL_CHILDREN + SUB_CHILDREN; c++)
                if (r->pid == pids[c]) child_runs[c]++;
        }
        if (is_group(i)) {
            groups++;
            int want_threads = task_type(i) == DIST_WORKER_SUB ? SUB_THREADS : NL_THREADS;
            CHECK(thread_runs == want_threads, "group task %u: %d members on threads, expected %d", i, thread_runs, want_threads);
            for (int c = 0; c < NL_CHILDREN + SUB_CHILDREN; c++) {
                int mine = (c < NL_CHILDREN) == (task_type(i) == DIST_WORKER_NEXT_LEVEL);
                CHECK(child_runs[c] == mine, "group task %u: child %d ran %d members, expected %d", i, pids[c], child_runs[c], mine);
            }
        }
    }
    printf("ok: all %d tasks ran once with exact args/config/callable; %d groups covered every worker\n", NTASKS, groups);
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: shutdown returned DIST_OK\n");
}

/* ---- phase 2: order with one worker per type, and failures ---- */

#define FAIL_NL_HANDLE 0xFA11FA11ull
#define FAIL_SUB_ID 77ull
#define FAIL_NL_CODE 173
#define FAIL_SUB_CODE 174

static int32_t ordered_task(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    const Ctx *ctx = user;
    (void)c;
    if (callable == FAIL_NL_HANDLE) return FAIL_NL_CODE;
    if (callable == FAIL_SUB_ID) return FAIL_SUB_CODE;
    if (a->scalar_count != 1) return 900;
    unsigned slot = atomic_fetch_add(&g_shared->next[ctx->type], 1);
    if (slot >= ORDER_TASKS) return 901;
    g_shared->order[ctx->type][slot] = a->scalars[0];
    return 0;
}

static DistTaskId dispatch_simple(DistWorker *w, DistWorkerType ty, uint64_t callable, uint64_t scalar) {
    DistTaskArgs a;
    memset(&a, 0, sizeof a);
    a.scalars = &scalar;
    a.scalar_count = 1;
    DistTask t;
    memset(&t, 0, sizeof t);
    t.worker_type = ty;
    t.callable = callable;
    t.config.block_dim = 24;
    t.config.aicpu_thread_num = 3;
    t.args = &a;
    t.group_size = 1;
    DistTaskId id = 0;
    EXPECT_OK(dist_worker_dispatch(w, &t, &id));
    return id;
}

static void expect_failure(DistWorker *w, DistTaskId id, DistWorkerType ty, uint64_t callable, int code, int child_pid) {
    DistStatus st = dist_worker_wait(w, id);
    CHECK(st == DIST_ERR_TASK_FAILED, "failing task: wait returned %s", dist_status_str(st));
    const char *msg = dist_last_error_message();
    char dec[32], hex[32], codes[16], pid[16];
    snprintf(dec, sizeof dec, "%" PRIu64, callable);
    snprintf(hex, sizeof hex, "%#" PRIx64, callable);
    snprintf(codes, sizeof codes, "%d", code);
    snprintf(pid, sizeof pid, "%d", child_pid);
    CHECK(strstr(msg, codes) != NULL, "message does not name the code %d: \"%s\"", code, msg);
    CHECK(strstr(msg, dec) || strstr(msg, hex), "message does not name callable %s/%s: \"%s\"", dec, hex, msg);
    CHECK(strstr(msg, ty == DIST_WORKER_SUB ? "SUB" : "NEXT_LEVEL"), "message does not name the worker type: \"%s\"", msg);
    if (child_pid > 0)
        CHECK(strstr(msg, pid) != NULL, "message does not name child %d: \"%s\"", child_pid, msg);
    else
        CHECK(strstr(msg, "thread") != NULL, "message does not name the thread worker: \"%s\"", msg);
    printf("ok: wait -> DIST_ERR_TASK_FAILED: %s\n", msg);
}

static void phase_single_worker(int sub_is_child) {
    printf("== 2. one worker per type: SUB on a %s, NEXT_LEVEL on a %s\n",
           sub_is_child ? "child" : "thread", sub_is_child ? "thread" : "child");
    static Ctx nl = {DIST_WORKER_NEXT_LEVEL}, sub = {DIST_WORKER_SUB};
    atomic_store(&g_shared->next[0], 0);
    atomic_store(&g_shared->next[1], 0);
    DistWorker *w = NULL;
    int32_t pid = 0;
    EXPECT_OK(dist_worker_create(NULL, &w));
    if (sub_is_child) {
        EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, ordered_task, &sub, &pid));
        EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, ordered_task, &nl));
    } else {
        EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, ordered_task, &nl, &pid));
        EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, ordered_task, &sub));
    }
    uint64_t want[2][ORDER_TASKS];
    unsigned n[2] = {0, 0};
    for (uint32_t i = 0; i < ORDER_TASKS; i++) {
        DistWorkerType ty = (i * 7919u) % 5 < 2 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL;
        uint64_t seq = 0xABC00000ull + i;
        dispatch_simple(w, ty, ty == DIST_WORKER_SUB ? 5 : NL_HANDLE_BASE, seq);
        want[ty][n[ty]++] = seq;
    }
    EXPECT_OK(dist_worker_drain(w));
    for (int ty = 0; ty < 2; ty++) {
        unsigned got = atomic_load(&g_shared->next[ty]);
        CHECK(got == n[ty], "type %d ran %u tasks, dispatched %u", ty, got, n[ty]);
        for (unsigned k = 0; k < n[ty]; k++)
            CHECK(g_shared->order[ty][k] == want[ty][k], "type %d: task #%u ran out of dispatch order (got %#" PRIx64 ", want %#" PRIx64 ")",
                  ty, k, g_shared->order[ty][k], want[ty][k]);
        printf("ok: %u %s tasks ran in dispatch order\n", n[ty], ty == DIST_WORKER_SUB ? "SUB" : "NEXT_LEVEL");
    }

    DistTaskId f_nl = dispatch_simple(w, DIST_WORKER_NEXT_LEVEL, FAIL_NL_HANDLE, 1);
    DistTaskId f_sub = dispatch_simple(w, DIST_WORKER_SUB, FAIL_SUB_ID, 2);
    DistTaskId ok_after = dispatch_simple(w, DIST_WORKER_SUB, 5, 3);
    expect_failure(w, f_nl, DIST_WORKER_NEXT_LEVEL, FAIL_NL_HANDLE, FAIL_NL_CODE, sub_is_child ? 0 : pid);
    expect_failure(w, f_sub, DIST_WORKER_SUB, FAIL_SUB_ID, FAIL_SUB_CODE, sub_is_child ? pid : 0);
    EXPECT_OK(dist_worker_wait(w, ok_after));
    printf("ok: a task after the failures succeeded\n");
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_TASK_FAILED);
    const char *msg = dist_last_error_message();
    CHECK(strstr(msg, "173") || strstr(msg, "174"), "drain message does not name a code: \"%s\"", msg);
    EXPECT_OK(dist_worker_drain(w));
    printf("ok: the next drain is DIST_OK\n");
    dispatch_simple(w, DIST_WORKER_NEXT_LEVEL, NL_HANDLE_BASE, 4);
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: still usable; shutdown returned DIST_OK\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Mapped before any fork so threads and children share it. */
    g_shared = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(g_shared != MAP_FAILED, "mmap: %s", strerror(errno));
    phase_mixed_pool();
    phase_single_worker(1);
    phase_single_worker(0);
    munmap(g_shared, sizeof(Shared));
    printf("pool_basic: all checks passed\n");
    return 0;
}
