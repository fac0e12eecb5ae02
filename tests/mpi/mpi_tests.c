/* Levels on other ranks over MPI. Every rank runs this program with one
 * section name (mpirun -np 3 mpi_tests <section>): rank 0 drives ranks 1
 * and 2, which serve a level each (a pool thread and a forked child of
 * SUB workers). Rank 0 checks and prints "<section>: ok"; any failed check
 * prints "FAIL" and the program exits non-zero.
 *
 *   dag        a DAG across both ranks with placement, a group, a local
 *              SUB worker on rank 0 checking the bytes, figures
 *   bytes      byte round trips: small, 0-d and 64 MiB tensors, checksummed
 *   failure    a failing remote task's message and path; dependents; a task
 *              too large for the rank's heap; the ranks keep working
 *   kill       a rank killed with SIGKILL mid-task: CHILD_DIED within 1 s,
 *              it leaves the pool, the other rank keeps serving
 *   rank0_dies rank 0 kills itself: ranks 1 and 2 return from serving
 *              within a second
 *   setup_fails rank 2's level setup function fails: rank 0's start fails
 *              naming the rank and the code; rank 1 is told to stop
 *   setup_dies rank 2 is killed in its level setup function: rank 0's start
 *              fails with CHILD_DIED within a second or two, not at its
 *              start timeout (20 s)
 *   idle       rank 0 starts and sleeps 4 s (to measure what idle ranks cost)
 */
#define _GNU_SOURCE
#include <dist_worker.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int rank_ = -1;
static const char *section_ = "";

#define CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "FAIL rank %d %s:%d: %s: ", rank_, __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); fflush(NULL); _exit(1); } } while (0)
#define TRY(call) do { DistStatus s_ = (call); CHECK(s_ == DIST_OK, "%s: %s", \
    dist_status_str(s_), dist_last_error_message()); } while (0)

enum { SCALE = 1, INC = 2, FAIL = 3, PID = 4, SLEEP = 5, XOR = 6, NOTE_DEATH = 7 };
enum { SUB_SCALE = 11, SUB_INC = 12, SUB_FAIL = 13, SUB_SLEEP = 15, SUB_XOR = 16, SUB_CHECK = 21 };

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint64_t elements(const DistTensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndims; d++) n *= t->shapes[d];
    return n;
}

static uint64_t fnv(const uint8_t *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---------------------------------------------------------------- ranks >= 1 */

/* SUB callables of a rank's level (a pool thread or a forked child). */
static int32_t sub_fn(void *user, uint64_t callable, const DistTaskView *a,
                      const DistCallConfig *config) {
    (void)user; (void)config;
    switch (callable) {
    case SUB_SCALE: {  /* y = x * k + rank */
        const uint32_t *x = (const uint32_t *)(uintptr_t)a->tensors[0].data;
        uint32_t *y = (uint32_t *)(uintptr_t)a->tensors[1].data;
        for (uint64_t i = 0; i < elements(&a->tensors[0]); i++)
            y[i] = x[i] * (uint32_t)a->scalars[0] + (uint32_t)a->scalars[1];
        return 0;
    }
    case SUB_INC: {
        uint32_t *v = (uint32_t *)(uintptr_t)a->tensors[0].data;
        for (uint64_t i = 0; i < elements(&a->tensors[0]); i++) v[i] += 1;
        return 0;
    }
    case SUB_FAIL: {
        char m[64];
        snprintf(m, sizeof m, "disk full on rank %d", (int)a->scalars[0]);
        dist_child_set_error_message(m);
        return 5;
    }
    case SUB_SLEEP:
        usleep((useconds_t)a->scalars[0] * 1000);
        return 0;
    case SUB_XOR: {  /* every byte ^= 0x5a; out[0] = checksum of the input */
        uint8_t *v = (uint8_t *)(uintptr_t)a->tensors[0].data;
        uint64_t n = elements(&a->tensors[0]) * (a->tensors[0].dtype == DIST_UINT8 ? 1 : 4);
        *(uint64_t *)(uintptr_t)a->tensors[1].data = fnv(v, n);
        for (uint64_t i = 0; i < n; i++) v[i] ^= 0x5a;
        return 0;
    }
    }
    return 99;
}

static int32_t setup(void *user, DistWorker *inner) {
    (void)user;
    if (strcmp(section_, "setup_fails") == 0 && rank_ == 2) {
        dist_child_set_error_message("no accelerator found");
        return 3;
    }
    if (strcmp(section_, "setup_dies") == 0 && rank_ == 2) {
        usleep(300 * 1000);   /* it was heard from, then dies mid-setup */
        kill(getpid(), SIGKILL);
    }
    if (dist_worker_spawn(inner, DIST_WORKER_SUB, sub_fn, NULL, NULL) != DIST_OK) return 1;
    return dist_worker_add_thread(inner, DIST_WORKER_SUB, sub_fn, NULL) == DIST_OK ? 0 : 2;
}

static double death_planned_at;

/* Rank 0's tasks on this rank: each submits SUB tasks on the inner level
 * over the tensors it received (they live in the inner level's heap). */
static int32_t orch(void *user, DistWorker *inner, uint64_t callable, const DistTaskView *a,
                    const DistCallConfig *config) {
    (void)user;
    DistTensorArgType tags[2];
    DistTensor t[2];
    uint64_t sc[2] = { a->scalar_count > 0 ? a->scalars[0] : 0, (uint64_t)rank_ };
    DistTaskArgs args = { .tensors = t, .tags = tags, .scalars = sc, .scalar_count = 2 };
    DistTask task = { DIST_WORKER_SUB, 0, *config, &args, 1 };
    switch (callable) {
    case SCALE:
        t[0] = a->tensors[0]; tags[0] = DIST_ARG_INPUT;
        t[1] = a->tensors[1]; tags[1] = DIST_ARG_OUTPUT_EXISTING;
        args.tensor_count = 2; task.callable = SUB_SCALE;
        break;
    case INC:
        t[0] = a->tensors[0]; tags[0] = DIST_ARG_INOUT;
        args.tensor_count = 1; task.callable = SUB_INC;
        break;
    case FAIL: task.callable = SUB_FAIL; sc[0] = (uint64_t)rank_; break;
    case PID:
        *(int64_t *)(uintptr_t)a->tensors[0].data = getpid();
        return 0;
    case SLEEP: task.callable = SUB_SLEEP; break;
    case XOR:
        t[0] = a->tensors[0]; tags[0] = DIST_ARG_INOUT;
        t[1] = a->tensors[1]; tags[1] = DIST_ARG_OUTPUT_EXISTING;
        args.tensor_count = 2; task.callable = SUB_XOR;
        break;
    case NOTE_DEATH:
        memcpy(&death_planned_at, &a->scalars[0], sizeof death_planned_at);
        return 0;
    default: return 42;
    }
    return dist_worker_dispatch(inner, &task, NULL) == DIST_OK ? 0 : 1;
}

static int serve_rank(const char *section) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    o.heap_ring_size = 128u << 20;
    DistStatus s = dist_worker_mpi_serve(&o, setup, orch, NULL);
    if (strcmp(section, "rank0_dies") == 0) {
        double late = now_ms() - death_planned_at;
        printf("rank %d: serve returned %s %.0f ms after rank 0 died: %s\n", rank_,
               dist_status_str(s), late, late < 1000 && s == DIST_ERR_SHUT_DOWN ? "ok" : "FAIL");
        fflush(stdout);
        /* rank 0 is gone: no MPI_Finalize, which would wait for it */
        _exit(late < 1000 && s == DIST_ERR_SHUT_DOWN ? 0 : 1);
    }
    if (strcmp(section, "setup_fails") == 0) {
        DistStatus want = rank_ == 2 ? DIST_ERR_TASK_FAILED : DIST_OK;
        if (s != want) {
            fprintf(stderr, "FAIL rank %d: serve: %s: %s\n", rank_, dist_status_str(s),
                    dist_last_error_message());
            return 1;
        }
        printf("rank %d: serve returned %s: ok\n", rank_, dist_status_str(s));
        return 0;
    }
    if (s != DIST_OK && strcmp(section, "kill") != 0) {
        fprintf(stderr, "FAIL rank %d: serve: %s: %s\n", rank_, dist_status_str(s),
                dist_last_error_message());
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- rank 0 */

static DistTask next_level(uint64_t callable, DistTaskArgs *args) {
    DistTask t = { DIST_WORKER_NEXT_LEVEL, callable, { 24, 3, false, false }, args, 1 };
    return t;
}

static DistWorker *driver(uint32_t *count) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    o.level = 4;
    o.heap_ring_size = 256u << 20;
    o.start_timeout_ms = 20000;
    DistWorker *w;
    TRY(dist_worker_create(&o, &w));
    TRY(dist_worker_add_mpi_levels(w, count));
    /* MPI stays up while a DistWorker drives the ranks, started or not */
    CHECK(dist_worker_mpi_finalize() == DIST_ERR_BAD_STATE, "finalize under a driver: %s",
          dist_last_error_message());
    return w;
}

static int64_t pid_of(DistWorker *w, uint32_t worker) {
    DistTensor t = { .shapes = {1}, .ndims = 1, .dtype = DIST_INT64 };
    DistTensorArgType out = DIST_ARG_OUTPUT;
    DistTaskArgs a = { .tensors = &t, .tags = &out, .tensor_count = 1 };
    DistTask task = next_level(PID, &a);
    DistTaskId id;
    TRY(dist_worker_dispatch_on(w, &task, &worker, &id));
    TRY(dist_worker_wait(w, id));
    TRY(dist_worker_task_tensor(w, id, 0, 0, &t));
    return *(int64_t *)(uintptr_t)t.data;
}

/* Rank 0's own SUB worker: checks b[i] == 3i + 2 after the remote work. */
static int32_t check_fn(void *user, uint64_t callable, const DistTaskView *a,
                        const DistCallConfig *config) {
    (void)user; (void)config;
    if (callable != SUB_CHECK) return 7;
    const uint32_t *b = (const uint32_t *)(uintptr_t)a->tensors[0].data;
    for (uint64_t i = 0; i < elements(&a->tensors[0]); i++)
        if (b[i] != 3 * (uint32_t)i + 2) return 8;
    return 0;
}

static void test_dag(void) {
    uint32_t count = 0;
    DistWorker *w = driver(&count);
    CHECK(count == 2, "%u ranks registered", count);
    TRY(dist_worker_add_thread(w, DIST_WORKER_SUB, check_fn, NULL));
    enum { N = 100000 };
    TRY(dist_worker_scope_begin(w));
    uint32_t shape = N;
    DistTensor x, b = { .shapes = {N}, .ndims = 1, .dtype = DIST_INT32 };
    TRY(dist_worker_alloc(w, &shape, 1, DIST_INT32, &x));
    for (uint32_t i = 0; i < N; i++) ((uint32_t *)(uintptr_t)x.data)[i] = i;

    /* rank 1: b = 3x + 1 (b allocated by rank 0's engine) */
    DistTensor t1[2] = { x, b };
    DistTensorArgType g1[2] = { DIST_ARG_INPUT, DIST_ARG_OUTPUT };
    uint64_t k = 3;
    DistTaskArgs a1 = { t1, g1, 2, &k, 1 };
    DistTask scale = next_level(SCALE, &a1);
    uint32_t on1 = 0, on2 = 1;
    DistTaskId id1, id2, id3;
    TRY(dist_worker_dispatch_on(w, &scale, &on1, &id1));
    TRY(dist_worker_task_tensor(w, id1, 0, 1, &b));
    /* rank 2: b += 1, after rank 1 wrote it */
    DistTensorArgType g2 = DIST_ARG_INOUT;
    DistTaskArgs a2 = { &b, &g2, 1, NULL, 0 };
    DistTask inc = next_level(INC, &a2);
    TRY(dist_worker_dispatch_on(w, &inc, &on2, &id2));
    /* rank 0's own SUB worker reads it last */
    DistTensorArgType g3 = DIST_ARG_INPUT;
    DistTaskArgs a3 = { &b, &g3, 1, NULL, 0 };
    DistTask check = { DIST_WORKER_SUB, SUB_CHECK, { 24, 3, false, false }, &a3, 1 };
    TRY(dist_worker_dispatch(w, &check, &id3));
    TRY(dist_worker_scope_end(w));
    TRY(dist_worker_wait(w, id3));
    const uint32_t *bv = (const uint32_t *)(uintptr_t)b.data;
    CHECK(bv[0] == 2 && bv[N - 1] == 3 * (uint32_t)(N - 1) + 2, "b[0] %u b[N-1] %u", bv[0], bv[N - 1]);

    /* a group of two members, one per rank, each reporting its pid */
    DistTensor p[2] = { { .shapes = {1}, .ndims = 1, .dtype = DIST_INT64 },
                        { .shapes = {1}, .ndims = 1, .dtype = DIST_INT64 } };
    DistTensorArgType out = DIST_ARG_OUTPUT;
    DistTaskArgs ga[2] = { { &p[0], &out, 1, NULL, 0 }, { &p[1], &out, 1, NULL, 0 } };
    DistTask group = { DIST_WORKER_NEXT_LEVEL, PID, { 24, 3, false, false }, ga, 2 };
    DistTaskId gid;
    TRY(dist_worker_dispatch(w, &group, &gid));
    TRY(dist_worker_wait(w, gid));
    DistTensor r0, r1;
    TRY(dist_worker_task_tensor(w, gid, 0, 0, &r0));
    TRY(dist_worker_task_tensor(w, gid, 1, 0, &r1));
    int64_t pid0 = *(int64_t *)(uintptr_t)r0.data, pid1 = *(int64_t *)(uintptr_t)r1.data;
    CHECK(pid0 > 0 && pid1 > 0 && pid0 != pid1 && pid0 != getpid() && pid1 != getpid(),
          "group pids %" PRId64 " %" PRId64, pid0, pid1);
    TRY(dist_worker_drain(w));

    DistWorkerStats s = { .size = sizeof s };
    TRY(dist_worker_stats(w, &s));
    CHECK(s.types[DIST_WORKER_NEXT_LEVEL].completed == 3 && s.types[DIST_WORKER_NEXT_LEVEL].failed == 0,
          "NEXT_LEVEL completed %" PRIu64, s.types[DIST_WORKER_NEXT_LEVEL].completed);
    for (uint32_t i = 0; i < 2; i++) {
        DistWorkerInfo info = { .size = sizeof info };
        TRY(dist_worker_worker_info(w, i, &info));
        CHECK(info.mode == DIST_WORKER_MODE_LEVEL && info.tasks_run == 2,
              "worker %u mode %d tasks %" PRIu64, i, (int)info.mode, info.tasks_run);
    }
    TRY(dist_worker_shutdown(w));
    printf("dag: rank 1 scaled, rank 2 incremented, rank 0 checked %d values; group on pids %" PRId64
           " and %" PRId64 ": ok\n", N, pid0, pid1);
}

/* INOUT `bytes` of a pattern through rank `worker + 1` and back, xor-ed;
 * the rank's checksum of what it received comes back too. */
static double xor_round_trip(DistWorker *w, uint32_t worker, uint8_t *buf, uint64_t bytes,
                             uint32_t ndims) {
    for (uint64_t i = 0; i < bytes; i++) buf[i] = (uint8_t)(i * 131 + (i >> 13));
    uint64_t want = fnv(buf, bytes), sum = 0;
    DistTensor t[2] = { { .data = (uint64_t)(uintptr_t)buf, .shapes = {(uint32_t)bytes},
                          .ndims = ndims, .dtype = DIST_UINT8 },
                        { .data = (uint64_t)(uintptr_t)&sum, .shapes = {1}, .ndims = 1,
                          .dtype = DIST_UINT64 } };
    DistTensorArgType g[2] = { DIST_ARG_INOUT, DIST_ARG_OUTPUT_EXISTING };
    DistTaskArgs a = { t, g, 2, NULL, 0 };
    DistTask task = next_level(XOR, &a);
    DistTaskId id;
    double t0 = now_ms();
    TRY(dist_worker_dispatch_on(w, &task, &worker, &id));
    TRY(dist_worker_wait(w, id));
    double took = now_ms() - t0;
    CHECK(sum == want, "rank %u received checksum %" PRIx64 ", sent %" PRIx64, worker + 1, sum, want);
    for (uint64_t i = 0; i < bytes; i++)
        CHECK(buf[i] == (uint8_t)((uint8_t)(i * 131 + (i >> 13)) ^ 0x5a), "byte %" PRIu64 " came back wrong", i);
    return took;
}

static void test_bytes(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    uint8_t small[3];
    xor_round_trip(w, 0, small, 1, 0);      /* 0-d: one element */
    xor_round_trip(w, 1, small, 3, 1);
    uint8_t *page = malloc(4096 + 1);
    xor_round_trip(w, 0, page, 4097, 1);
    free(page);
    uint64_t big = 64u << 20;
    uint8_t *buf = malloc(big);
    CHECK(buf, "malloc");
    double t1 = xor_round_trip(w, 0, buf, big, 1);
    double t2 = xor_round_trip(w, 1, buf, big, 1);
    free(buf);
    /* INPUT goes out only, OUTPUT comes back only: scale on rank 1 */
    enum { N = 1000 };
    uint32_t x[N], y[N];
    for (uint32_t i = 0; i < N; i++) { x[i] = i; y[i] = 0xdeadbeef; }
    DistTensor t[2] = { { .data = (uint64_t)(uintptr_t)x, .shapes = {N}, .ndims = 1, .dtype = DIST_INT32 },
                        { .data = (uint64_t)(uintptr_t)y, .shapes = {N}, .ndims = 1, .dtype = DIST_INT32 } };
    DistTensorArgType g[2] = { DIST_ARG_INPUT, DIST_ARG_OUTPUT_EXISTING };
    uint64_t k = 7;
    DistTaskArgs a = { t, g, 2, &k, 1 };
    DistTask scale = next_level(SCALE, &a);
    uint32_t on = 0;
    DistTaskId id;
    TRY(dist_worker_dispatch_on(w, &scale, &on, &id));
    TRY(dist_worker_wait(w, id));
    for (uint32_t i = 0; i < N; i++) CHECK(y[i] == 7 * i + 1 && x[i] == i, "y[%u] = %u", i, y[i]);
    TRY(dist_worker_shutdown(w));
    printf("bytes: 1, 3, 4097 bytes and 64 MiB both ways, checksummed (64 MiB round trips %.1f ms, "
           "%.1f ms): ok\n", t1, t2);
}

static void test_failure(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    uint32_t on2 = 1;
    DistTaskArgs none = { 0 };
    DistTask fail = next_level(FAIL, &none);
    DistTaskId id;
    TRY(dist_worker_dispatch_on(w, &fail, &on2, &id));
    DistStatus s = dist_worker_wait(w, id);
    const char *m = dist_last_error_message();
    CHECK(s == DIST_ERR_TASK_FAILED, "%s", dist_status_str(s));
    CHECK(strstr(m, "L4 task ") && strstr(m, "-> L3 worker 1 (rank 2): task ") &&
          strstr(m, "returned error 5 from callable 0xd: disk full on rank 2"), "message: %s", m);
    printf("failure message: %s\n", m);
    TRY(dist_worker_drain(w) == DIST_ERR_TASK_FAILED ? DIST_OK : DIST_ERR_PROTOCOL);

    /* a dependent of a failed remote task never runs */
    uint32_t v[4] = { 1, 2, 3, 4 };
    DistTensor t = { .data = (uint64_t)(uintptr_t)v, .shapes = {4}, .ndims = 1, .dtype = DIST_INT32 };
    DistTensorArgType out = DIST_ARG_OUTPUT_EXISTING, inout = DIST_ARG_INOUT;
    DistTaskArgs wa = { &t, &out, 1, NULL, 0 }, ra = { &t, &inout, 1, NULL, 0 };
    DistTask writer = next_level(FAIL, &wa), reader = next_level(INC, &ra);
    DistTaskId idw, idr;
    TRY(dist_worker_dispatch_on(w, &writer, &on2, &idw));
    TRY(dist_worker_dispatch(w, &reader, &idr));
    CHECK(dist_worker_wait(w, idr) == DIST_ERR_DEPENDENCY_FAILED, "dependent: %s", dist_last_error_message());
    CHECK(v[0] == 1 && v[3] == 4, "a failed task's outputs came back");
    (void)dist_worker_drain(w);

    /* more bytes than rank 1's 128 MiB heap holds: refused there, in step
       (a small tensor first, so the rank's scratch space for the refused
       bytes must hold the larger chunks that follow it) */
    uint64_t big = 160u << 20, lead_len = 3u << 20;
    uint8_t *buf = calloc(big, 1), *lead = calloc(lead_len, 1);
    uint64_t sum = 0;
    DistTensor bt[3] = { { .data = (uint64_t)(uintptr_t)lead, .shapes = {(uint32_t)lead_len}, .ndims = 1, .dtype = DIST_UINT8 },
                         { .data = (uint64_t)(uintptr_t)buf, .shapes = {(uint32_t)big}, .ndims = 1, .dtype = DIST_UINT8 },
                         { .data = (uint64_t)(uintptr_t)&sum, .shapes = {1}, .ndims = 1, .dtype = DIST_UINT64 } };
    DistTensorArgType bg[3] = { DIST_ARG_INPUT, DIST_ARG_INOUT, DIST_ARG_OUTPUT_EXISTING };
    DistTaskArgs ba = { bt, bg, 3, NULL, 0 };
    DistTask huge = next_level(XOR, &ba);
    uint32_t on1 = 0;
    TRY(dist_worker_dispatch_on(w, &huge, &on1, &id));
    s = dist_worker_wait(w, id);
    m = dist_last_error_message();
    CHECK(s == DIST_ERR_TASK_FAILED && strstr(m, "(rank 1): rank 1 could not hold the task's tensors"),
          "%s: %s", dist_status_str(s), m);
    CHECK(buf[0] == 0 && sum == 0, "a refused task's outputs came back");
    free(buf);
    free(lead);
    printf("too large: %s\n", m);
    (void)dist_worker_drain(w);

    /* both ranks still serve */
    uint8_t small[5];
    xor_round_trip(w, 0, small, 5, 1);
    xor_round_trip(w, 1, small, 5, 1);
    TRY(dist_worker_drain(w));
    TRY(dist_worker_shutdown(w));
    printf("failure: message with its path, dependents, refused tensors, ranks still serving: ok\n");
}

static void test_kill(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    int64_t victim = pid_of(w, 1);
    uint64_t ms = 10000;
    DistTaskArgs a = { NULL, NULL, 0, &ms, 1 };
    DistTask sleepy = next_level(SLEEP, &a);
    uint32_t on2 = 1;
    DistTaskId id;
    TRY(dist_worker_dispatch_on(w, &sleepy, &on2, &id));
    usleep(200 * 1000);
    CHECK(dist_worker_wait_timeout(w, id, 0) == DIST_ERR_TIMEOUT, "the task ended early");
    double t0 = now_ms();
    CHECK(kill((pid_t)victim, SIGKILL) == 0, "kill %" PRId64, victim);
    DistStatus s = dist_worker_wait(w, id);
    double took = now_ms() - t0;
    const char *m = dist_last_error_message();
    CHECK(s == DIST_ERR_CHILD_DIED, "%s: %s", dist_status_str(s), m);
    CHECK(took < 1000, "noticed after %.0f ms", took);
    CHECK(strstr(m, "L3 worker 1 (rank 2) went silent"), "message: %s", m);
    printf("killed rank 2 (pid %" PRId64 ") mid-task: %s after %.0f ms: %s\n", victim,
           dist_status_str(s), took, m);
    (void)dist_worker_drain(w);
    /* it left the pool: placed on it, NO_WORKER; unplaced work goes to rank 1 */
    DistWorkerInfo info = { .size = sizeof info };
    TRY(dist_worker_worker_info(w, 1, &info));
    CHECK(info.state == DIST_WORKER_STATE_RETIRED, "state %d", (int)info.state);
    CHECK(dist_worker_dispatch_on(w, &sleepy, &on2, NULL) == DIST_ERR_NO_WORKER, "placed on a dead rank");
    ms = 1;
    for (int i = 0; i < 5; i++) TRY(dist_worker_dispatch(w, &sleepy, NULL));
    TRY(dist_worker_drain(w));
    TRY(dist_worker_worker_info(w, 0, &info));
    CHECK(info.tasks_run == 5, "rank 1 ran %" PRIu64, info.tasks_run);
    double t1 = now_ms();
    TRY(dist_worker_shutdown(w));
    printf("kill: the other rank kept serving; shutdown took %.0f ms: ok\n", now_ms() - t1);
}

static void test_setup_fails(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    DistStatus s = dist_worker_start(w);
    const char *m = dist_last_error_message();
    CHECK(s == DIST_ERR_CHILD_DIED, "start: %s: %s", dist_status_str(s), m);
    CHECK(strstr(m, "L3 worker 1 (rank 2): its level setup function failed with error 3") &&
          strstr(m, "no accelerator found"), "message: %s", m);
    printf("start failed: %s\n", m);
    DistTaskArgs none = { 0 };
    DistTask t = next_level(PID, &none);
    CHECK(dist_worker_dispatch(w, &t, NULL) == DIST_ERR_SHUT_DOWN, "dispatch after a failed start");
    TRY(dist_worker_shutdown(w));
}

static void test_setup_dies(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    double t0 = now_ms();
    DistStatus s = dist_worker_start(w);
    double took = now_ms() - t0;
    const char *m = dist_last_error_message();
    CHECK(s == DIST_ERR_CHILD_DIED && strstr(m, "(rank 2)") && took < 3000,
          "start: %s after %.0f ms: %s", dist_status_str(s), took, m);
    printf("setup died: start failed after %.0f ms: %s\n", took, m);
    TRY(dist_worker_shutdown(w));
}

static void test_rank0_dies(void) {
    uint32_t count;
    DistWorker *w = driver(&count);
    double at = now_ms() + 50;
    uint64_t word;
    memcpy(&word, &at, sizeof word);
    DistTaskArgs a = { NULL, NULL, 0, &word, 1 };
    DistTask note = next_level(NOTE_DEATH, &a);
    for (uint32_t i = 0; i < 2; i++) TRY(dist_worker_dispatch_on(w, &note, &i, NULL));
    TRY(dist_worker_drain(w));
    while (now_ms() < at) usleep(1000);
    printf("rank 0 kills itself\n");
    fflush(stdout);
    kill(getpid(), SIGKILL);
}

int main(int argc, char **argv) {
    int32_t size;
    setvbuf(stdout, NULL, _IOLBF, 0);
    TRY(dist_worker_mpi_init(&argc, &argv, &rank_, &size));
    CHECK(argc == 2, "usage: mpirun -np 3 %s dag|bytes|failure|kill|rank0_dies", argv[0]);
    CHECK(size == 3, "run with 3 ranks, not %d", size);
    const char *section = section_ = argv[1];
    if (rank_ != 0) {
        int rc = serve_rank(section);
        TRY(dist_worker_mpi_finalize());
        return rc;
    }
    if (strcmp(section, "dag") == 0) test_dag();
    else if (strcmp(section, "bytes") == 0) test_bytes();
    else if (strcmp(section, "failure") == 0) test_failure();
    else if (strcmp(section, "kill") == 0) test_kill();
    else if (strcmp(section, "rank0_dies") == 0) test_rank0_dies();
    else if (strcmp(section, "setup_fails") == 0) test_setup_fails();
    else if (strcmp(section, "setup_dies") == 0) test_setup_dies();
    else if (strcmp(section, "idle") == 0) {
        uint32_t count;
        DistWorker *w = driver(&count);
        TRY(dist_worker_start(w));
        sleep(4);
        TRY(dist_worker_shutdown(w));
    }
    else CHECK(0, "unknown section %s", section);
    TRY(dist_worker_mpi_finalize());
    printf("%s: ok\n", section);
    return 0;
}
