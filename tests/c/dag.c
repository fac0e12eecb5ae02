/* dag: the DAG engine through the C API, with spawned PROCESS children and
 * THREAD workers.
 *
 * Every callable appends (task number, START/END, pid) to an event log in
 * MAP_SHARED memory mapped before the first fork, so children and threads
 * write the same log. A completion reaches the parent (TASK_DONE, release)
 * before any dependent is dispatched, so the log's index order is a valid
 * proof of ordering: "A before B" means every END of A has a smaller index
 * than every START of B. Nothing here asserts timing. Where a test must show
 * that a task does NOT wait for another, the other one blocks on a flag that
 * only the first one sets: a wrong dependency deadlocks the pair, the flag
 * wait gives up after GATE_LIMIT_S and the task fails with GATE_TIMEOUT.
 *
 * Proves:
 *  1. read after write: readers wait for the writer; a reader of another
 *     address does not.
 *  2. write after write: OUTPUT_EXISTING does not wait for the previous
 *     writer; a reader waits for the newest writer only; NO_DEP and data 0
 *     never wait.
 *  3. an INOUT chain of 50 tasks across 5 workers of both types runs strictly
 *     in order (order in the log, and the value each task reads).
 *  4. a diamond and a 16-wide fan-out / fan-in, with values passed along.
 *  5. groups of both types are one node: members share an OUTPUT (or INOUT)
 *     address without waiting on themselves, run at once on distinct
 *     workers, and a consumer waits for all members; a group larger than its
 *     pool is refused.
 *  6. heap outputs: OUTPUT with data 0 gets 64-byte aligned shared memory
 *     (dist_worker_task_tensor tells the address); a child writes it, other
 *     children and threads read it; dist_worker_alloc + OUTPUT_EXISTING
 *     producer + consumers; ids and descriptors are unknown after drain.
 *  7. nested scopes: memory of an inner scope's tasks stays valid for its
 *     consumers; 64 levels open, the 65th is refused, an unmatched end is
 *     refused.
 *  8. back-pressure with a 4096-byte ring: 12 scoped 1 KiB outputs succeed by
 *     waiting for reclamation (and consumers still read their own values);
 *     with the ring held by an open scope, alloc and dispatch fail with
 *     DIST_ERR_RESOURCE_EXHAUSTED (after alloc_timeout_ms, and at once with 0);
 *     an ended inner scope's memory is reused while the outer one holds its own.
 *  9. 1000 cycles of scope_begin / alloc / produce / consume / scope_end /
 *     drain on a 16 KiB ring are all OK (a leak would exhaust the ring).
 * 10. failures: dependents (transitively, and of a failed group) end with
 *     DIST_ERR_DEPENDENCY_FAILED naming a failed task's id in hex and never
 *     run; an independent task succeeds; drain reports DIST_ERR_TASK_FAILED;
 *     the engine is usable afterwards. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define LOG_CAP 16384
#define MAX_NO 4096
#define NFLAGS 64
#define NMEM 1024
#define MAXT 20
#define MAXOPS 24
#define MAXG 4
#define GATE_LIMIT_S 20
#define NL_HANDLE_BASE 0xD46000000000ull

/* Error codes a callable returns on its own account. */
#define E_BAD_ARGS 900
#define E_BAD_CALLABLE 901
#define E_GATE_TIMEOUT 902
#define E_BAD_TENSOR 903
#define E_MISMATCH 1000 /* + index of the failing op */

enum { EV_START = 1, EV_END = 2 };

/* Ops (op, a, v) a callable performs, in order. */
enum {
    OP_READ = 1,      /* *(u64 *)a == v */
    OP_WRITE = 2,     /* *(u64 *)a = v */
    OP_READ_T = 3,    /* every u64 element i of tensors[a] == v + i */
    OP_WRITE_T = 4,   /* every u64 element i of tensors[a] = v + i */
    OP_BARRIER = 5,   /* bar[a] += 1, then wait until bar[a] >= v */
};

typedef struct {
    uint32_t no;
    uint16_t kind;
    uint16_t type;
    int32_t pid;
} Event;

typedef struct {
    atomic_uint nlog;
    Event ev[LOG_CAP];
    atomic_int flag[NFLAGS];
    atomic_int bar[NFLAGS];
    uint64_t mem[NMEM]; /* real memory whose addresses serve as tensor data */
    atomic_int mismatches;
    uint64_t bad_no, bad_op, bad_got, bad_want;
} Shared;

static Shared *sh;

typedef struct {
    DistWorkerType type;
} Ctx;
static Ctx ctx_nl = {DIST_WORKER_NEXT_LEVEL}, ctx_sub = {DIST_WORKER_SUB};

static uint64_t callable_of(DistWorkerType ty, uint64_t no) {
    return ty == DIST_WORKER_SUB ? no : NL_HANDLE_BASE | no;
}
static uint64_t addr(const void *p) { return (uint64_t)(uintptr_t)p; }
static uint64_t *mem(unsigned k) { return &sh->mem[k]; }

static void log_event(uint64_t no, int kind, DistWorkerType ty) {
    unsigned i = atomic_fetch_add(&sh->nlog, 1);
    if (i >= LOG_CAP) return; /* counted: the parent sees nlog > LOG_CAP */
    sh->ev[i].no = (uint32_t)no;
    sh->ev[i].kind = (uint16_t)kind;
    sh->ev[i].type = (uint16_t)ty;
    sh->ev[i].pid = getpid();
}

static void pause_us(uint64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Waits until *p >= want; 0 when it happened, -1 after GATE_LIMIT_S. */
static int wait_at_least(atomic_int *p, int want) {
    for (long i = 0; i < GATE_LIMIT_S * 10000L; i++) {
        if (atomic_load(p) >= want) return 0;
        pause_us(100);
    }
    return -1;
}

static int tensor_u64s(const DistTensor *t, uint64_t **p, uint64_t *n) {
    if (t->dtype != DIST_UINT64 && t->dtype != DIST_INT64) return -1;
    if (t->ndims < 1 || t->ndims > 5 || t->data == 0) return -1;
    uint64_t c = 1;
    for (uint32_t d = 0; d < t->ndims; d++) c *= t->shapes[d];
    *p = (uint64_t *)(uintptr_t)t->data;
    *n = c;
    return 0;
}

static void mismatch(uint64_t no, uint64_t op, uint64_t got, uint64_t want) {
    if (atomic_fetch_add(&sh->mismatches, 1) == 0) {
        sh->bad_no = no;
        sh->bad_op = op;
        sh->bad_got = got;
        sh->bad_want = want;
    }
}

/* The one callable. Scalars: [no, sleep µs, error to return, flag to wait
 * for (index, 0 = none), flag to set at start (index, 0 = none), then
 * (op, a, v) triples]. */
static int32_t run_task(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *cfg) {
    const Ctx *ctx = user;
    (void)cfg;
    if (a->scalar_count < 5 || (a->scalar_count - 5) % 3 != 0) return E_BAD_ARGS;
    const uint64_t *s = a->scalars;
    uint64_t no = s[0];
    log_event(no, EV_START, ctx->type);
    int32_t rc = 0;
    if (callable != callable_of(ctx->type, no)) rc = E_BAD_CALLABLE;
    if (s[4]) atomic_store(&sh->flag[s[4]], 1);
    if (rc == 0 && s[3] && wait_at_least(&sh->flag[s[3]], 1) != 0) rc = E_GATE_TIMEOUT;
    if (s[1]) pause_us(s[1]);
    for (int32_t k = 5; rc == 0 && k < a->scalar_count; k += 3) {
        uint64_t op = s[k], x = s[k + 1], v = s[k + 2];
        uint64_t *p, n;
        switch (op) {
        case OP_READ:
            if (*(volatile uint64_t *)(uintptr_t)x != v) {
                mismatch(no, (uint64_t)k, *(volatile uint64_t *)(uintptr_t)x, v);
                rc = E_MISMATCH + k;
            }
            break;
        case OP_WRITE: *(volatile uint64_t *)(uintptr_t)x = v; break;
        case OP_READ_T:
        case OP_WRITE_T:
            if (x >= (uint64_t)a->tensor_count || tensor_u64s(&a->tensors[x], &p, &n) != 0) {
                rc = E_BAD_TENSOR;
                break;
            }
            for (uint64_t i = 0; i < n; i++) {
                if (op == OP_WRITE_T) {
                    p[i] = v + i;
                } else if (p[i] != v + i) {
                    mismatch(no, (uint64_t)k, p[i], v + i);
                    rc = E_MISMATCH + k;
                    break;
                }
            }
            break;
        case OP_BARRIER:
            if (x >= NFLAGS) { rc = E_BAD_ARGS; break; }
            atomic_fetch_add(&sh->bar[x], 1);
            if (wait_at_least(&sh->bar[x], (int)v) != 0) rc = E_GATE_TIMEOUT;
            break;
        default: rc = E_BAD_ARGS;
        }
    }
    log_event(no, EV_END, ctx->type);
    return rc ? rc : (int32_t)s[2];
}

/* ---- building tasks ---- */

typedef struct {
    DistTensor t[MAXT];
    DistTensorArgType tag[MAXT];
    uint32_t nt;
    uint64_t s[5 + 3 * MAXOPS];
    uint32_t ns;
} Member;

static Member mb(uint64_t no) {
    Member m;
    memset(&m, 0, sizeof m);
    m.s[0] = no;
    m.ns = 5;
    return m;
}
static Member *sleep_us(Member *m, uint64_t us) { m->s[1] = us; return m; }
static Member *fail_with(Member *m, uint64_t code) { m->s[2] = code; return m; }
static Member *wait_flag(Member *m, unsigned f) { m->s[3] = f; return m; }
static Member *set_flag(Member *m, unsigned f) { m->s[4] = f; return m; }
static Member *tshape(Member *m, uint64_t data, DistTensorArgType tag, uint32_t d0, uint32_t d1, uint8_t dtype) {
    CHECK(m->nt < MAXT, "too many tensors");
    DistTensor *t = &m->t[m->nt];
    memset(t, 0, sizeof *t);
    t->data = data;
    t->shapes[0] = d0;
    t->shapes[1] = d1;
    t->ndims = d1 ? 2 : 1;
    t->dtype = dtype;
    m->tag[m->nt++] = tag;
    return m;
}
/* One uint64 element at `data` (the common case). */
static Member *ten(Member *m, uint64_t data, DistTensorArgType tag) { return tshape(m, data, tag, 1, 0, DIST_UINT64); }
static Member *op(Member *m, uint64_t o, uint64_t a, uint64_t v) {
    CHECK(m->ns + 3 <= 5 + 3 * MAXOPS, "too many ops");
    m->s[m->ns++] = o;
    m->s[m->ns++] = a;
    m->s[m->ns++] = v;
    return m;
}

static DistStatus try_submit(DistWorker *w, DistWorkerType ty, const Member *m, uint32_t n, DistTaskId *id) {
    DistTaskArgs a[MAXG];
    CHECK(n >= 1 && n <= MAXG, "bad group size %u", n);
    for (uint32_t i = 0; i < n; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].tensors = m[i].nt ? m[i].t : NULL;
        a[i].tags = m[i].nt ? m[i].tag : NULL;
        a[i].tensor_count = m[i].nt;
        a[i].scalars = m[i].s;
        a[i].scalar_count = m[i].ns;
    }
    DistTask t;
    memset(&t, 0, sizeof t);
    t.worker_type = ty;
    t.callable = callable_of(ty, m[0].s[0]);
    t.config.block_dim = 24;
    t.config.aicpu_thread_num = 3;
    t.args = a;
    t.group_size = n;
    return dist_worker_dispatch(w, &t, id);
}

static DistTaskId submit_n(DistWorker *w, DistWorkerType ty, const Member *m, uint32_t n) {
    DistTaskId id = 0;
    DistStatus st = try_submit(w, ty, m, n, &id);
    CHECK(st == DIST_OK, "dispatch of task %" PRIu64 " returned %s", m[0].s[0], dist_status_str(st));
    CHECK(id != 0, "task %" PRIu64 " got id 0", m[0].s[0]);
    return id;
}
static DistTaskId submit(DistWorker *w, DistWorkerType ty, const Member *m) { return submit_n(w, ty, m, 1); }

#define NL DIST_WORKER_NEXT_LEVEL
#define SUB DIST_WORKER_SUB
#define IN DIST_ARG_INPUT
#define OUT DIST_ARG_OUTPUT
#define INOUT DIST_ARG_INOUT
#define OUTX DIST_ARG_OUTPUT_EXISTING
#define NODEP DIST_ARG_NO_DEP

/* ---- reading the log ---- */

static int first_start[MAX_NO], last_end[MAX_NO], starts[MAX_NO], ends[MAX_NO];

static void reset_log(void) {
    atomic_store(&sh->nlog, 0);
    for (int i = 0; i < NFLAGS; i++) {
        atomic_store(&sh->flag[i], 0);
        atomic_store(&sh->bar[i], 0);
    }
}

/* Call after a drain (or waits for every task of interest). */
static void timeline(void) {
    unsigned n = atomic_load(&sh->nlog);
    CHECK(n <= LOG_CAP, "event log overflowed (%u events)", n);
    CHECK(atomic_load(&sh->mismatches) == 0,
          "task %" PRIu64 " read %#" PRIx64 " where %#" PRIx64 " was expected (scalar %" PRIu64 ")",
          sh->bad_no, sh->bad_got, sh->bad_want, sh->bad_op);
    for (int i = 0; i < MAX_NO; i++) first_start[i] = last_end[i] = -1, starts[i] = ends[i] = 0;
    for (unsigned i = 0; i < n; i++) {
        uint32_t no = sh->ev[i].no;
        CHECK(no < MAX_NO, "task number %u out of range", no);
        if (sh->ev[i].kind == EV_START) {
            if (first_start[no] < 0) first_start[no] = (int)i;
            starts[no]++;
        } else {
            last_end[no] = (int)i;
            ends[no]++;
        }
    }
}
static int ran(unsigned no) { return starts[no]; }
/* Every run of a ended before any run of b started. */
static void before(unsigned a, unsigned b) {
    CHECK(ran(a) > 0 && ends[a] == ran(a), "task %u did not run to its end", a);
    CHECK(ran(b) > 0, "task %u did not run", b);
    CHECK(last_end[a] < first_start[b], "task %u (last end: event %d) must end before task %u starts (event %d)",
          a, last_end[a], b, first_start[b]);
}
/* a started before b ended: b did not hold a back. */
static void overlapped(unsigned a, unsigned b) {
    CHECK(ran(a) > 0 && ran(b) > 0 && first_start[a] < last_end[b], "task %u waited for task %u", a, b);
}
/* Distinct pids among the START events of task no. */
static int distinct_pids(unsigned no) {
    int32_t seen[16];
    int k = 0;
    unsigned n = atomic_load(&sh->nlog);
    for (unsigned i = 0; i < n && k < 16; i++) {
        if (sh->ev[i].no != no || sh->ev[i].kind != EV_START) continue;
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= seen[j] == sh->ev[i].pid;
        if (!dup) seen[k++] = sh->ev[i].pid;
    }
    return k;
}

/* ---- workers ---- */

static DistWorker *make_worker(int nl_procs, int nl_threads, int sub_procs, int sub_threads, uint64_t ring,
                               uint32_t timeout_ms, int use_timeout) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    if (ring) o.heap_ring_size = ring;
    if (use_timeout) o.alloc_timeout_ms = timeout_ms;
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(&o, &w));
    fflush(stdout);
    int32_t pid;
    for (int i = 0; i < nl_procs; i++) EXPECT_OK(dist_worker_spawn(w, NL, run_task, &ctx_nl, &pid));
    for (int i = 0; i < sub_procs; i++) EXPECT_OK(dist_worker_spawn(w, SUB, run_task, &ctx_sub, &pid));
    for (int i = 0; i < nl_threads; i++) EXPECT_OK(dist_worker_add_thread(w, NL, run_task, &ctx_nl));
    for (int i = 0; i < sub_threads; i++) EXPECT_OK(dist_worker_add_thread(w, SUB, run_task, &ctx_sub));
    printf("ok: worker with NEXT_LEVEL %d children + %d threads, SUB %d children + %d threads, ring %" PRIu64 "\n",
           nl_procs, nl_threads, sub_procs, sub_threads, (uint64_t)o.heap_ring_size);
    return w;
}

static void expect_wait(DistWorker *w, DistTaskId id, DistStatus want, const char *what) {
    DistStatus st = dist_worker_wait(w, id);
    CHECK(st == want, "%s: wait returned %s, expected %s", what, dist_status_str(st), dist_status_str(want));
}

static int names_id(const char *msg, DistTaskId id) {
    char hex[32];
    snprintf(hex, sizeof hex, "%#" PRIx64, id);
    return strstr(msg, hex) != NULL;
}

/* ---- 1, 2: read after write, write after write, tags that never wait ---- */

static void test_tags(DistWorker *w) {
    SECTION("1. read after write");
    reset_log();
    Member m;
    m = mb(1), submit(w, SUB, op(wait_flag(sleep_us(ten(&m, 0x1000, OUT), 2000), 4), OP_WRITE, addr(mem(0)), 11));
    m = mb(2), submit(w, SUB, op(ten(&m, 0x1000, IN), OP_READ, addr(mem(0)), 11));
    m = mb(3), submit(w, NL, op(ten(&m, 0x1000, IN), OP_READ, addr(mem(0)), 11));
    m = mb(4), submit(w, SUB, set_flag(ten(&m, 0x2000, IN), 4)); /* task 1 waits for it */
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(1, 2);
    before(1, 3);
    overlapped(4, 1);
    printf("ok: readers 2 and 3 started after writer 1 ended and read its value; reader 4 of another address did not wait\n");

    SECTION("2. write after write; NO_DEP and data 0 never wait");
    reset_log();
    m = mb(1), submit(w, SUB, wait_flag(ten(&m, 0x1000, OUT), 3)); /* old writer, held until 3 starts */
    m = mb(2), submit(w, SUB, op(sleep_us(ten(&m, 0x1000, OUTX), 1000), OP_WRITE, addr(mem(1)), 22));
    m = mb(3), submit(w, NL, op(set_flag(ten(&m, 0x1000, IN), 3), OP_READ, addr(mem(1)), 22));
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(2, 3);
    overlapped(2, 1);
    overlapped(3, 1);
    printf("ok: OUTPUT_EXISTING 2 did not wait for writer 1; reader 3 waited for 2 only\n");
    reset_log();
    m = mb(4), submit(w, SUB, wait_flag(ten(&m, 0x3000, OUT), 5));
    m = mb(5), submit(w, SUB, set_flag(ten(ten(&m, 0x3000, NODEP), 0, IN), 5));
    m = mb(6), submit(w, NL, ten(ten(&m, 0x3000, NODEP), 0, OUT));
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    overlapped(5, 4);
    CHECK(ran(6) == 1, "task 6 ran %d times", ran(6));
    printf("ok: NO_DEP on a written address and data 0 did not wait\n");
}

/* ---- 3: INOUT chain ---- */

static void test_chain(DistWorker *w) {
    SECTION("3. an INOUT chain of 50 tasks across both types");
    reset_log();
    uint64_t *counter = mem(10);
    *counter = 0;
    for (unsigned i = 1; i <= 50; i++) {
        Member m = mb(i);
        ten(&m, addr(counter), INOUT);
        sleep_us(&m, (i % 4) * 200);
        op(&m, OP_READ, addr(counter), i - 1);
        op(&m, OP_WRITE, addr(counter), i);
        submit(w, i % 3 == 0 ? NL : SUB, &m);
    }
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    for (unsigned i = 2; i <= 50; i++) before(i - 1, i);
    CHECK(*counter == 50, "counter is %" PRIu64, *counter);
    int32_t pids[8];
    int k = 0;
    for (unsigned i = 0; i < atomic_load(&sh->nlog); i++) {
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= pids[j] == sh->ev[i].pid;
        if (!dup && k < 8) pids[k++] = sh->ev[i].pid;
    }
    CHECK(k >= 2, "the chain ran in %d process(es)", k);
    printf("ok: 50 tasks ran strictly in order in %d processes; each read its predecessor's value\n", k);
}

/* ---- 4: diamond, fan-out / fan-in ---- */

static void test_diamond_fan(DistWorker *w) {
    SECTION("4. a diamond and a 16-wide fan-out / fan-in");
    reset_log();
    uint64_t *a = mem(20), *b = mem(21), *c = mem(22), *x = mem(30), *y = mem(40);
    Member m;
    m = mb(1), submit(w, NL, op(sleep_us(ten(&m, addr(a), OUT), 2000), OP_WRITE, addr(a), 1));
    m = mb(2), submit(w, SUB, op(op(sleep_us(ten(ten(&m, addr(a), IN), addr(b), OUT), 1000), OP_READ, addr(a), 1), OP_WRITE, addr(b), 2));
    m = mb(3), submit(w, NL, op(op(ten(ten(&m, addr(a), IN), addr(c), OUT), OP_READ, addr(a), 1), OP_WRITE, addr(c), 3));
    m = mb(4), submit(w, SUB, op(op(ten(ten(&m, addr(b), IN), addr(c), IN), OP_READ, addr(b), 2), OP_READ, addr(c), 3));

    m = mb(10), submit(w, SUB, op(sleep_us(ten(&m, addr(x), OUT), 1000), OP_WRITE, addr(x), 10));
    Member r = mb(30);
    for (unsigned i = 0; i < 16; i++) {
        m = mb(11 + i);
        ten(ten(&m, addr(x), IN), addr(&y[i]), OUT);
        op(op(sleep_us(&m, 200), OP_READ, addr(x), 10), OP_WRITE, addr(&y[i]), 11 + i);
        submit(w, i % 2 ? NL : SUB, &m);
        op(ten(&r, addr(&y[i]), IN), OP_READ, addr(&y[i]), 11 + i);
    }
    submit(w, NL, &r);
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(1, 2), before(1, 3), before(2, 4), before(3, 4);
    for (unsigned i = 0; i < 16; i++) before(10, 11 + i), before(11 + i, 30);
    printf("ok: diamond 1 -> {2, 3} -> 4 and fan 10 -> 16 readers -> 30 ran in order with the right values\n");
}

/* ---- 5: groups ---- */

static void test_groups(DistWorker *w, uint32_t nl_pool, uint32_t sub_pool) {
    SECTION("5. group tasks of both types are one node");
    reset_log();
    uint64_t *gx = mem(100), *gy = mem(110), *gz = mem(120);
    Member g[MAXG];
    /* G1: 2 NEXT_LEVEL members, both OUTPUT to gx, each its own element. */
    for (unsigned i = 0; i < 2; i++) {
        g[i] = mb(1);
        tshape(&g[i], addr(gx), OUT, 4, 0, DIST_UINT64);
        op(op(sleep_us(&g[i], 2000), OP_BARRIER, 1, 2), OP_WRITE, addr(&gx[i]), 100 + i);
    }
    DistTaskId g1 = submit_n(w, NL, g, 2);
    /* G2: 3 SUB members read gx, all OUTPUT to gy. */
    for (unsigned i = 0; i < 3; i++) {
        g[i] = mb(2);
        tshape(tshape(&g[i], addr(gx), IN, 4, 0, DIST_UINT64), addr(gy), OUT, 4, 0, DIST_UINT64);
        op(op(op(op(sleep_us(&g[i], 500), OP_BARRIER, 2, 3), OP_READ, addr(&gx[0]), 100), OP_READ, addr(&gx[1]), 101),
           OP_WRITE, addr(&gy[i]), 200 + i);
    }
    DistTaskId g2 = submit_n(w, SUB, g, 3);
    Member c = mb(3);
    ten(&c, addr(gy), IN);
    for (unsigned i = 0; i < 3; i++) op(&c, OP_READ, addr(&gy[i]), 200 + i);
    DistTaskId c3 = submit(w, NL, &c);
    /* G4: 2 SUB members INOUT on gz (a group never waits for itself). */
    for (unsigned i = 0; i < 2; i++) {
        g[i] = mb(4);
        op(op(ten(&g[i], addr(gz), INOUT), OP_BARRIER, 4, 2), OP_WRITE, addr(&gz[i]), 400 + i);
    }
    submit_n(w, SUB, g, 2);
    c = mb(5);
    op(op(ten(&c, addr(gz), IN), OP_READ, addr(&gz[0]), 400), OP_READ, addr(&gz[1]), 401);
    submit(w, NL, &c);
    EXPECT_OK(dist_worker_wait(w, g1));
    EXPECT_OK(dist_worker_wait(w, g2));
    EXPECT_OK(dist_worker_wait(w, c3));
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    CHECK(ran(1) == 2 && ran(2) == 3 && ran(4) == 2, "group members ran %d, %d, %d times", ran(1), ran(2), ran(4));
    CHECK(distinct_pids(1) == 2, "the 2 members of G1 ran in %d distinct processes", distinct_pids(1));
    CHECK(distinct_pids(2) == 3, "the 3 members of G2 ran in %d distinct processes", distinct_pids(2));
    before(1, 2), before(2, 3), before(4, 5);
    printf("ok: groups ran 2/3/2 members at once (barrier), did not wait on their own OUTPUT/INOUT, "
           "consumers waited for every member\n");
    /* A group larger than its pool is refused, not left waiting. */
    for (unsigned i = 0; i < MAXG; i++) g[i] = mb(9);
    DistTaskId id = 0;
    CHECK(nl_pool < MAXG && sub_pool < MAXG, "pools too large for this check");
    EXPECT_ERR(try_submit(w, NL, g, nl_pool + 1, &id), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(try_submit(w, SUB, g, sub_pool + 1, &id), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_drain(w));
}

/* ---- 6: heap outputs and dist_worker_alloc ---- */

static int overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

static void test_heap(DistWorker *w) {
    SECTION("6. heap outputs and dist_worker_alloc");
    reset_log();
    Member m = mb(1);
    tshape(&m, 0, OUT, 1, 0, DIST_UINT64);
    tshape(&m, 0, OUT, 4, 2, DIST_UINT64);
    op(op(sleep_us(&m, 2000), OP_WRITE_T, 0, 0xC0FFEE00), OP_WRITE_T, 1, 7000);
    DistTaskId p = submit(w, SUB, &m);
    DistTensor o0, o1, junk;
    EXPECT_OK(dist_worker_task_tensor(w, p, 0, 0, &o0));
    EXPECT_OK(dist_worker_task_tensor(w, p, 0, 1, &o1));
    CHECK(o0.data != 0 && o0.data % 64 == 0, "heap output 0 at %#" PRIx64 ", not 64-byte aligned", o0.data);
    CHECK(o1.data != 0 && o1.data % 64 == 0, "heap output 1 at %#" PRIx64 ", not 64-byte aligned", o1.data);
    CHECK(!overlap(o0.data, 8, o1.data, 64), "heap outputs overlap: %#" PRIx64 " %#" PRIx64, o0.data, o1.data);
    CHECK(o0.ndims == 1 && o0.shapes[0] == 1 && o0.dtype == DIST_UINT64, "descriptor 0 changed");
    CHECK(o1.ndims == 2 && o1.shapes[0] == 4 && o1.shapes[1] == 2 && o1.dtype == DIST_UINT64, "descriptor 1 changed");
    printf("ok: OUTPUT data 0 -> heap %#" PRIx64 " and %#" PRIx64 ", 64-byte aligned\n", o0.data, o1.data);
    EXPECT_ERR(dist_worker_task_tensor(w, p, 0, 2, &junk), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_task_tensor(w, p, 1, 0, &junk), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_task_tensor(w, p, 0, 0, NULL), DIST_ERR_NULL_ARGUMENT);

    m = mb(2);
    op(op(ten(&m, o0.data, INOUT), OP_READ_T, 0, 0xC0FFEE00), OP_WRITE_T, 0, 0xC0FFEE02);
    DistTaskId p2 = submit(w, SUB, &m);
    DistTensor same;
    EXPECT_OK(dist_worker_task_tensor(w, p2, 0, 0, &same));
    CHECK(same.data == o0.data, "a given address was rewritten");
    DistTaskId cons[3];
    for (unsigned i = 0; i < 3; i++) {
        m = mb(3 + i);
        tshape(ten(&m, o0.data, IN), o1.data, IN, 4, 2, DIST_UINT64);
        op(op(&m, OP_READ_T, 0, 0xC0FFEE02), OP_READ_T, 1, 7000);
        cons[i] = submit(w, i == 1 ? SUB : NL, &m);
    }

    /* dist_worker_alloc: memory handed out directly, then produced and consumed. */
    const uint32_t shape[2] = {4, 4};
    DistTensor t;
    EXPECT_OK(dist_worker_alloc(w, shape, 2, DIST_UINT64, &t));
    CHECK(t.ndims == 2 && t.shapes[0] == 4 && t.shapes[1] == 4 && t.dtype == DIST_UINT64, "alloc descriptor wrong");
    CHECK(t.data != 0 && t.data % 64 == 0, "alloc at %#" PRIx64 ", not 64-byte aligned", t.data);
    CHECK(!overlap(t.data, 128, o0.data, 8) && !overlap(t.data, 128, o1.data, 64), "alloc overlaps a live output");
    printf("ok: dist_worker_alloc({4, 4}, UINT64) -> %#" PRIx64 ", 64-byte aligned\n", t.data);
    EXPECT_ERR(dist_worker_alloc(w, shape, 6, DIST_UINT64, &junk), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_alloc(w, shape, 2, 9, &junk), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_alloc(w, NULL, 2, DIST_UINT64, &junk), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_alloc(w, shape, 2, DIST_UINT64, NULL), DIST_ERR_NULL_ARGUMENT);
    m = mb(7);
    tshape(&m, t.data, OUTX, 4, 4, DIST_UINT64);
    op(sleep_us(&m, 1000), OP_WRITE_T, 0, 9000);
    submit(w, NL, &m);
    DistTaskId tc[2];
    for (unsigned i = 0; i < 2; i++) {
        m = mb(8 + i);
        op(tshape(&m, t.data, IN, 4, 4, DIST_UINT64), OP_READ_T, 0, 9000);
        tc[i] = submit(w, i ? SUB : NL, &m);
    }
    for (unsigned i = 0; i < 3; i++) EXPECT_OK(dist_worker_wait(w, cons[i]));
    for (unsigned i = 0; i < 2; i++) EXPECT_OK(dist_worker_wait(w, tc[i]));
    EXPECT_OK(dist_worker_wait(w, p2));
    /* The parent sees what the children wrote, at the same addresses. */
    CHECK(*(uint64_t *)(uintptr_t)o0.data == 0xC0FFEE02, "parent reads %#" PRIx64, *(uint64_t *)(uintptr_t)o0.data);
    for (unsigned i = 0; i < 8; i++) CHECK(((uint64_t *)(uintptr_t)o1.data)[i] == 7000 + i, "o1[%u] wrong", i);
    for (unsigned i = 0; i < 16; i++) CHECK(((uint64_t *)(uintptr_t)t.data)[i] == 9000 + i, "t[%u] wrong", i);
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(1, 2);
    for (unsigned i = 0; i < 3; i++) before(2, 3 + i);
    before(7, 8), before(7, 9);
    printf("ok: children wrote heap memory; other children, threads and the parent read it\n");
    /* After drain the ids and their descriptors are unknown. */
    EXPECT_ERR(dist_worker_task_tensor(w, p, 0, 0, &junk), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_wait(w, p), DIST_ERR_INVALID_ARGUMENT);
}

/* ---- 7: nested scopes ---- */

static void test_scopes(DistWorker *w) {
    SECTION("7. nested scopes");
    reset_log();
    const uint32_t eight = 8;
    DistTensor outer, inner;
    Member m;
    EXPECT_OK(dist_worker_scope_begin(w));
    EXPECT_OK(dist_worker_alloc(w, &eight, 1, DIST_UINT64, &outer));
    EXPECT_OK(dist_worker_scope_begin(w));
    EXPECT_OK(dist_worker_alloc(w, &eight, 1, DIST_UINT64, &inner));
    m = mb(1);
    tshape(tshape(tshape(&m, inner.data, OUTX, 8, 0, DIST_UINT64), outer.data, OUTX, 8, 0, DIST_UINT64), 0, OUT, 8, 0,
           DIST_UINT64);
    op(op(op(sleep_us(&m, 2000), OP_WRITE_T, 0, 500), OP_WRITE_T, 1, 600), OP_WRITE_T, 2, 700);
    DistTaskId p = submit(w, SUB, &m);
    DistTensor h;
    EXPECT_OK(dist_worker_task_tensor(w, p, 0, 2, &h));
    EXPECT_OK(dist_worker_scope_begin(w));
    m = mb(2);
    op(op(tshape(tshape(&m, inner.data, IN, 8, 0, DIST_UINT64), h.data, IN, 8, 0, DIST_UINT64), OP_READ_T, 0, 500),
       OP_READ_T, 1, 700);
    submit(w, NL, &m);
    EXPECT_OK(dist_worker_scope_end(w));
    EXPECT_OK(dist_worker_scope_end(w));
    /* The inner scopes ended before their tasks ran: their memory must stay
       valid until the readers are done. The outer allocation lives on. */
    m = mb(3);
    op(tshape(&m, outer.data, IN, 8, 0, DIST_UINT64), OP_READ_T, 0, 600);
    submit(w, SUB, &m);
    EXPECT_OK(dist_worker_scope_end(w));
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(1, 2), before(1, 3);
    printf("ok: tasks of ended inner scopes still read their inputs; the outer allocation stayed valid\n");

    for (int i = 0; i < DIST_MAX_SCOPE_DEPTH; i++) {
        DistStatus st = dist_worker_scope_begin(w);
        CHECK(st == DIST_OK, "scope_begin at depth %d returned %s", i, dist_status_str(st));
    }
    printf("ok: %d nested scopes opened\n", DIST_MAX_SCOPE_DEPTH);
    EXPECT_ERR(dist_worker_scope_begin(w), DIST_ERR_INVALID_ARGUMENT);
    /* The deepest scope works: a heap output and its consumer. */
    m = mb(4);
    op(tshape(&m, 0, OUT, 2, 0, DIST_UINT64), OP_WRITE_T, 0, 44);
    DistTaskId d = submit(w, SUB, &m);
    EXPECT_OK(dist_worker_task_tensor(w, d, 0, 0, &h));
    m = mb(5);
    op(tshape(&m, h.data, IN, 2, 0, DIST_UINT64), OP_READ_T, 0, 44);
    submit(w, NL, &m);
    for (int i = 0; i < DIST_MAX_SCOPE_DEPTH; i++) {
        DistStatus st = dist_worker_scope_end(w);
        CHECK(st == DIST_OK, "scope_end %d returned %s", i, dist_status_str(st));
    }
    printf("ok: the refused begin left the depth at %d: %d ends succeeded\n", DIST_MAX_SCOPE_DEPTH, DIST_MAX_SCOPE_DEPTH);
    EXPECT_ERR(dist_worker_scope_end(w), DIST_ERR_BAD_STATE);
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(4, 5);
    EXPECT_ERR(dist_worker_scope_end(w), DIST_ERR_BAD_STATE);
    EXPECT_OK(dist_worker_scope_begin(w));
    EXPECT_OK(dist_worker_scope_end(w));
    EXPECT_OK(dist_worker_drain(w));
    printf("ok: scopes usable after the refusals\n");
}

/* ---- 8: back-pressure ---- */

static void test_back_pressure(void) {
    SECTION("8. back-pressure on a 4096-byte heap ring");
    reset_log();
    DistWorker *w = make_worker(0, 0, 2, 1, 4096, 10000, 1);
    /* Each round's output takes 1 KiB: the ring holds four. Scoped, so each
       comes back once its producer and consumer are done. */
    uint64_t seen[12];
    int distinct = 0;
    for (unsigned r = 0; r < 12; r++) {
        EXPECT_OK(dist_worker_scope_begin(w));
        Member m = mb(1 + 2 * r);
        op(sleep_us(tshape(&m, 0, OUT, 128, 0, DIST_UINT64), 1000), OP_WRITE_T, 0, 1000 * (r + 1));
        DistTaskId p = submit(w, SUB, &m);
        DistTensor o;
        EXPECT_OK(dist_worker_task_tensor(w, p, 0, 0, &o));
        CHECK(o.data % 64 == 0, "round %u: %#" PRIx64 " not aligned", r, o.data);
        m = mb(2 + 2 * r);
        op(sleep_us(tshape(&m, o.data, IN, 128, 0, DIST_UINT64), 500), OP_READ_T, 0, 1000 * (r + 1));
        submit(w, SUB, &m);
        EXPECT_OK(dist_worker_scope_end(w));
        int dup = 0;
        for (int k = 0; k < distinct; k++) dup |= seen[k] == o.data;
        if (!dup) seen[distinct++] = o.data;
    }
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    for (unsigned r = 0; r < 12; r++) before(1 + 2 * r, 2 + 2 * r);
    CHECK(distinct < 12, "12 KiB came out of a 4 KiB ring at %d distinct addresses", distinct);
    printf("ok: 12 x 1 KiB through a 4 KiB ring (%d distinct addresses): dispatch waited for reclamation; "
           "every consumer read its own producer's values\n", distinct);
    /* An inner scope's memory comes back while the outer scope still holds
       its own: 1 KiB outer + 2 KiB inner, then 2 KiB more fits only by reusing
       the inner block. */
    {
        const uint32_t k1 = 1024, k2 = 2048;
        DistTensor outer, inner, again;
        EXPECT_OK(dist_worker_scope_begin(w));
        EXPECT_OK(dist_worker_alloc(w, &k1, 1, DIST_UINT8, &outer));
        EXPECT_OK(dist_worker_scope_begin(w));
        EXPECT_OK(dist_worker_alloc(w, &k2, 1, DIST_UINT8, &inner));
        Member m = mb(100);
        op(tshape(&m, inner.data, OUTX, 256, 0, DIST_UINT64), OP_WRITE_T, 0, 1);
        submit(w, SUB, &m);
        EXPECT_OK(dist_worker_scope_end(w));
        EXPECT_OK(dist_worker_alloc(w, &k2, 1, DIST_UINT8, &again));
        CHECK(!overlap(again.data, k2, outer.data, k1), "the outer block was handed out again");
        EXPECT_OK(dist_worker_scope_end(w));
        EXPECT_OK(dist_worker_drain(w));
        printf("ok: an ended inner scope's 2 KiB came back while the outer scope held its 1 KiB\n");
    }
    EXPECT_OK(dist_worker_shutdown(w));

    for (int zero = 0; zero < 2; zero++) {
        uint32_t timeout = zero ? 0 : 200;
        printf("-- alloc_timeout_ms = %u\n", timeout);
        reset_log();
        w = make_worker(0, 0, 1, 0, 4096, timeout, 1);
        const uint32_t full = 4090, small = 64, huge = 8192;
        DistTensor t, junk;
        EXPECT_OK(dist_worker_scope_begin(w));
        EXPECT_OK(dist_worker_alloc(w, &full, 1, DIST_UINT8, &t));
        EXPECT_ERR(dist_worker_alloc(w, &small, 1, DIST_UINT8, &junk), DIST_ERR_RESOURCE_EXHAUSTED);
        const char *msg = dist_last_error_message();
        CHECK(strstr(msg, "heap ring") != NULL, "message does not mention the heap ring: \"%s\"", msg);
        Member m = mb(1);
        tshape(&m, 0, OUT, 64, 0, DIST_UINT8);
        DistTaskId id = 0;
        EXPECT_ERR(try_submit(w, SUB, &m, 1, &id), DIST_ERR_RESOURCE_EXHAUSTED);
        EXPECT_ERR(dist_worker_alloc(w, &huge, 1, DIST_UINT8, &junk), DIST_ERR_RESOURCE_EXHAUSTED);
        /* A task without heap memory still runs. */
        m = mb(2);
        op(tshape(&m, t.data, OUTX, 8, 0, DIST_UINT64), OP_WRITE_T, 0, 5);
        submit(w, SUB, &m);
        EXPECT_OK(dist_worker_scope_end(w));
        EXPECT_OK(dist_worker_drain(w));
        EXPECT_OK(dist_worker_alloc(w, &full, 1, DIST_UINT8, &t));
        EXPECT_OK(dist_worker_drain(w));
        m = mb(3);
        tshape(&m, 0, OUT, 4096, 0, DIST_UINT8);
        EXPECT_OK(try_submit(w, SUB, &m, 1, &id));
        EXPECT_OK(dist_worker_drain(w));
        timeline();
        CHECK(ran(1) == 0 && ran(2) == 1 && ran(3) == 1, "ran %d %d %d", ran(1), ran(2), ran(3));
        printf("ok: after scope_end + drain the whole ring is free again (alloc and dispatch of 4 KiB)\n");
        EXPECT_OK(dist_worker_shutdown(w));
    }
}

/* ---- 9: reuse after drain ---- */

#define CYCLES 1000

static void test_reuse(void) {
    SECTION("9. 1000 cycles of scope / alloc / produce / consume / scope_end / drain");
    reset_log();
    DistWorker *w = make_worker(1, 0, 2, 1, 16384, 2000, 1);
    const uint32_t sixteen = 16;
    DistTaskId first = 0;
    for (unsigned i = 0; i < CYCLES; i++) {
        EXPECT_OK(dist_worker_scope_begin(w));
        DistTensor t;
        DistStatus st = dist_worker_alloc(w, &sixteen, 1, DIST_INT64, &t);
        CHECK(st == DIST_OK, "cycle %u: alloc returned %s", i, dist_status_str(st));
        Member m = mb(1 + 3 * i);
        tshape(tshape(&m, t.data, OUTX, 16, 0, DIST_INT64), 0, OUT, 8, 0, DIST_UINT64);
        op(op(&m, OP_WRITE_T, 0, 16 * i), OP_WRITE_T, 1, i);
        DistTaskId p = submit(w, SUB, &m);
        if (i == 0) first = p;
        DistTensor h;
        EXPECT_OK(dist_worker_task_tensor(w, p, 0, 1, &h));
        m = mb(2 + 3 * i);
        op(op(tshape(tshape(&m, t.data, IN, 16, 0, DIST_INT64), h.data, IN, 8, 0, DIST_UINT64), OP_READ_T, 0, 16 * i),
           OP_READ_T, 1, i);
        submit(w, i % 2 ? SUB : NL, &m);
        EXPECT_OK(dist_worker_scope_end(w));
        m = mb(3 + 3 * i);
        submit(w, SUB, ten(&m, 0x99, INOUT));
        st = dist_worker_drain(w);
        CHECK(st == DIST_OK, "cycle %u: drain returned %s", i, dist_status_str(st));
        if (i == 0) EXPECT_ERR(dist_worker_wait(w, first), DIST_ERR_INVALID_ARGUMENT);
    }
    timeline();
    for (unsigned n = 1; n <= 3 * CYCLES; n++) CHECK(ran(n) == 1, "task %u ran %d times", n, ran(n));
    for (unsigned i = 0; i < CYCLES; i++) before(1 + 3 * i, 2 + 3 * i);
    for (unsigned i = 1; i < CYCLES; i++) before(3 * i, 3 + 3 * i);
    printf("ok: %d cycles, all OK; every task ran once, consumers after producers, on a 16 KiB ring (no leak)\n", CYCLES);
    EXPECT_ERR(dist_worker_wait(w, first), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_shutdown(w));
}

/* ---- 10: failures ---- */

static void test_failures(DistWorker *w) {
    SECTION("10. a failure reaches its dependents only");
    reset_log();
    Member m;
    /* A fails, but only after B, C and E are queued behind it (flag 7). */
    m = mb(1), wait_flag(fail_with(ten(&m, 0x10, OUT), 42), 7);
    DistTaskId a = submit(w, SUB, &m);
    m = mb(2), ten(ten(&m, 0x10, IN), 0x20, OUT);
    DistTaskId b = submit(w, SUB, &m);
    m = mb(3), ten(&m, 0x20, INOUT);
    DistTaskId c = submit(w, NL, &m);
    m = mb(4), ten(&m, 0x30, OUT);
    DistTaskId d = submit(w, SUB, &m);
    Member g[2];
    g[0] = mb(6), g[1] = mb(6);
    sleep_us(ten(&g[0], 0x40, OUT), 500);
    fail_with(ten(&g[1], 0x40, OUT), 43);
    DistTaskId gid = submit_n(w, SUB, g, 2);
    m = mb(7), ten(&m, 0x40, IN);
    DistTaskId h = submit(w, NL, &m);
    atomic_store(&sh->flag[7], 1);

    expect_wait(w, a, DIST_ERR_TASK_FAILED, "A");
    const char *msg = dist_last_error_message();
    CHECK(strstr(msg, "42") != NULL, "A's message does not name code 42: \"%s\"", msg);
    printf("ok: A -> DIST_ERR_TASK_FAILED: %s\n", msg);
    expect_wait(w, b, DIST_ERR_DEPENDENCY_FAILED, "B");
    msg = dist_last_error_message();
    CHECK(names_id(msg, a), "B's message does not name A (%#" PRIx64 "): \"%s\"", a, msg);
    printf("ok: B -> DIST_ERR_DEPENDENCY_FAILED: %s\n", msg);
    expect_wait(w, c, DIST_ERR_DEPENDENCY_FAILED, "C");
    msg = dist_last_error_message();
    CHECK(names_id(msg, a) || names_id(msg, b), "C's message names neither A nor B: \"%s\"", msg);
    printf("ok: C -> DIST_ERR_DEPENDENCY_FAILED: %s\n", msg);
    EXPECT_OK(dist_worker_wait(w, d));
    printf("ok: independent D succeeded\n");
    expect_wait(w, gid, DIST_ERR_TASK_FAILED, "group G");
    expect_wait(w, h, DIST_ERR_DEPENDENCY_FAILED, "H after G");
    msg = dist_last_error_message();
    CHECK(names_id(msg, gid), "H's message does not name G (%#" PRIx64 "): \"%s\"", gid, msg);
    printf("ok: a group with one failing member fails; its consumer -> DEPENDENCY_FAILED: %s\n", msg);
    /* Submitted after the failure, reading A's output: fails without running. */
    m = mb(5), ten(&m, 0x10, IN);
    DistTaskId e = submit(w, SUB, &m);
    expect_wait(w, e, DIST_ERR_DEPENDENCY_FAILED, "E");
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_TASK_FAILED);
    timeline();
    CHECK(ran(2) == 0 && ran(3) == 0 && ran(5) == 0 && ran(7) == 0, "dependents ran: B %d C %d E %d H %d", ran(2),
          ran(3), ran(5), ran(7));
    CHECK(ran(1) == 1 && ran(4) == 1 && ran(6) == 2, "A %d D %d G %d", ran(1), ran(4), ran(6));
    printf("ok: B, C, E, H never ran\n");
    EXPECT_OK(dist_worker_drain(w));
    /* Usable afterwards; the failed writer is forgotten. */
    reset_log();
    m = mb(8), op(ten(&m, 0x10, IN), OP_WRITE, addr(mem(200)), 8);
    EXPECT_OK(dist_worker_wait(w, submit(w, SUB, &m)));
    m = mb(9), op(ten(&m, 0x10, OUT), OP_WRITE, addr(mem(201)), 9);
    submit(w, NL, &m);
    m = mb(10), op(ten(&m, 0x10, IN), OP_READ, addr(mem(201)), 9);
    submit(w, SUB, &m);
    EXPECT_OK(dist_worker_drain(w));
    timeline();
    before(9, 10);
    printf("ok: the engine works after the failures\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Mapped before any fork so threads and children share it. */
    sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED, "mmap: %s", strerror(errno));

    /* NEXT_LEVEL: 2 children + 1 thread; SUB: 2 children + 1 thread. */
    DistWorker *w = make_worker(2, 1, 2, 1, 0, 0, 0);
    test_tags(w);
    test_chain(w);
    test_diamond_fan(w);
    test_groups(w, 3, 3);
    test_heap(w);
    test_scopes(w);
    test_failures(w);
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: shutdown returned DIST_OK\n");

    test_back_pressure();
    test_reuse();

    munmap(sh, sizeof(Shared));
    printf("dag: all checks passed\n");
    return 0;
}
