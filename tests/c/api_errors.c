/* api_errors: every bad input to the C API gets the documented status and a
 * non-empty message, and never crashes or hangs.
 *
 * Proves: NULL pointers -> DIST_ERR_NULL_ARGUMENT; out-of-range enums, tags,
 * dtype, ndims, misaligned mailbox, oversized group -> INVALID_ARGUMENT;
 * blobs past 4032 bytes go through the heap to library workers, past 1 MiB
 * -> ARGS_TOO_LARGE (counts checked before any pointer is read); adding
 * workers after start -> BAD_STATE; no worker of a type -> NO_WORKER;
 * unknown task ids -> INVALID_ARGUMENT (also after drain); rejected tasks
 * never reach a worker; dist_status_str names every status; NULL-tolerant
 * functions (shutdown, options_init) tolerate NULL; dist_child_serve refuses
 * bad input and a protocol-violating mailbox instead of spinning. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "check.h"

static atomic_int g_calls;

static int32_t count_calls(void *user, uint64_t callable, const DistTaskView *args,
                           const DistCallConfig *config) {
    (void)user; (void)callable; (void)args; (void)config;
    atomic_fetch_add(&g_calls, 1);
    return 0;
}

static DistTensor tensor(uint64_t data, uint32_t ndims, uint8_t dtype) {
    DistTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    for (int d = 0; d < 5; d++) t.shapes[d] = 2;
    t.ndims = ndims;
    t.dtype = dtype;
    return t;
}

static DistTask sub_task(const DistTaskArgs *args, uint32_t group_size) {
    DistTask t;
    memset(&t, 0, sizeof t);
    t.worker_type = DIST_WORKER_SUB;
    t.callable = 1;
    t.config.block_dim = 24;
    t.config.aicpu_thread_num = 3;
    t.args = args;
    t.group_size = group_size;
    return t;
}

static void *map_mailbox(void) {
    void *p = mmap(NULL, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    return p;
}

static void check_layout(void) {
    SECTION("ABI layout matches the mailbox wire layout");
    CHECK(sizeof(DistTensor) == 40, "sizeof(DistTensor) = %zu", sizeof(DistTensor));
    CHECK(offsetof(DistTensor, shapes) == 8, "offsetof shapes");
    CHECK(offsetof(DistTensor, ndims) == 28, "offsetof ndims");
    CHECK(offsetof(DistTensor, dtype) == 32, "offsetof dtype");
    CHECK(DIST_MAILBOX_SIZE == 4096 && DIST_MAILBOX_OFF_ARGS == 64 &&
              DIST_MAILBOX_ARGS_CAPACITY == 4032,
          "mailbox constants");
    printf("ok: DistTensor is 40 bytes, fields at 0/8/28/32\n");
}

static void check_status_names(void) {
    static const char *names[] = {
        "DIST_OK", "DIST_ERR_NULL_ARGUMENT", "DIST_ERR_INVALID_ARGUMENT",
        "DIST_ERR_BAD_STATE", "DIST_ERR_ARGS_TOO_LARGE", "DIST_ERR_TASK_FAILED",
        "DIST_ERR_CHILD_DIED", "DIST_ERR_TIMEOUT", "DIST_ERR_SHUT_DOWN",
        "DIST_ERR_DEPENDENCY_FAILED", "DIST_ERR_NO_WORKER",
        "DIST_ERR_RESOURCE_EXHAUSTED", "DIST_ERR_OS", "DIST_ERR_PANIC",
        "DIST_ERR_PROTOCOL",
    };
    SECTION("dist_status_str");
    for (int s = 0; s <= 14; s++) {
        const char *got = dist_status_str(s);
        CHECK(got != NULL && strcmp(got, names[s]) == 0,
              "dist_status_str(%d) = \"%s\", expected \"%s\"", s, got ? got : "(null)", names[s]);
    }
    const int unknown[] = {15, -1, 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *got = dist_status_str(unknown[i]);
        CHECK(got != NULL && strcmp(got, "DIST_UNKNOWN_STATUS") == 0,
              "dist_status_str(%d) = \"%s\"", unknown[i], got ? got : "(null)");
    }
    printf("ok: 0..14 named, unknown values give DIST_UNKNOWN_STATUS\n");
}

static void check_null_tolerant(void) {
    SECTION("NULL-tolerant functions");
    dist_worker_options_init(NULL);
    printf("ok: dist_worker_options_init(NULL) returned\n");
    EXPECT_OK(dist_worker_shutdown(NULL));
    printf("ok: dist_worker_shutdown(NULL) is DIST_OK\n");
    DistWorkerOptions o;
    memset(&o, 0xab, sizeof o);
    dist_worker_options_init(&o);
    CHECK(o.level == 3 && o.heap_ring_size == 64ull << 20,
          "defaults: level %u heap %llu", o.level, (unsigned long long)o.heap_ring_size);
    printf("ok: defaults are level 3, 64 MiB heap ring\n");
    const char *m = dist_last_error_message();
    CHECK(m != NULL, "dist_last_error_message() returned NULL");
}

static void check_null_worker(void) {
    SECTION("NULL worker / out pointers / fn");
    DistTask t = sub_task(NULL, 0);
    DistTaskId id = 0;
    int32_t pid = 0;
    void *mb = map_mailbox();
    EXPECT_ERR(dist_worker_create(NULL, NULL), DIST_ERR_NULL_ARGUMENT);
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    EXPECT_ERR(dist_worker_create(&o, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_add_thread(NULL, DIST_WORKER_SUB, count_calls, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(NULL, DIST_WORKER_SUB, mb), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_spawn(NULL, DIST_WORKER_SUB, count_calls, NULL, &pid), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_start(NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_dispatch(NULL, &t, &id), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_wait(NULL, 1), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_drain(NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_child_serve(NULL, count_calls, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_child_serve(mb, NULL, NULL), DIST_ERR_NULL_ARGUMENT);

    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    CHECK(w != NULL, "create returned OK but no worker");
    EXPECT_ERR(dist_worker_add_thread(w, DIST_WORKER_SUB, NULL, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_spawn(w, DIST_WORKER_SUB, NULL, NULL, &pid), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, (char *)mb + 4), DIST_ERR_INVALID_ARGUMENT);
    ((volatile int32_t *)mb)[0] = DIST_MAILBOX_TASK_DONE;
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb), DIST_ERR_INVALID_ARGUMENT);
    ((volatile int32_t *)mb)[0] = DIST_MAILBOX_IDLE;
    const DistWorkerType bad_types[] = {7, -1, 2, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        DistWorkerType ty = bad_types[i];
        printf("-- worker type %d\n", (int)ty);
        EXPECT_ERR(dist_worker_add_thread(w, ty, count_calls, NULL), DIST_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(dist_worker_add_process(w, ty, mb), DIST_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(dist_worker_spawn(w, ty, count_calls, NULL, &pid), DIST_ERR_INVALID_ARGUMENT);
    }
    /* Refused spawns must not have forked anything. */
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
          "a refused dist_worker_spawn left a child process behind");
    printf("ok: refused spawns forked no child\n");
    EXPECT_OK(dist_worker_shutdown(w));
    munmap(mb, DIST_MAILBOX_SIZE);
}

static void check_child_serve(void) {
    SECTION("dist_child_serve on bad mailboxes returns instead of spinning");
    void *mb = map_mailbox();
    EXPECT_ERR(dist_child_serve((char *)mb + 4, count_calls, NULL), DIST_ERR_INVALID_ARGUMENT);
    ((volatile int32_t *)mb)[0] = 7; /* a state no parent writes */
    EXPECT_ERR(dist_child_serve(mb, count_calls, NULL), DIST_ERR_PROTOCOL);
    ((volatile int32_t *)mb)[0] = DIST_MAILBOX_SHUTDOWN;
    EXPECT_OK(dist_child_serve(mb, count_calls, NULL));
    printf("ok: a SHUTDOWN mailbox makes dist_child_serve return DIST_OK\n");
    munmap(mb, DIST_MAILBOX_SIZE);
}

/* Dispatches `t` and expects `want`; a rejected task must not run. */
static void expect_dispatch(DistWorker *w, const DistTask *t, DistStatus want, const char *what) {
    DistTaskId id = 0xdeadbeef;
    DistStatus st = dist_worker_dispatch(w, t, &id);
    if (st != want)
        CHECK_FAIL_("dispatch of %s returned %s (%d), expected %s", what,
                    dist_status_str(st), (int)st, dist_status_str(want));
    if (want != DIST_OK) {
        const char *m = dist_last_error_message();
        CHECK(m && m[0], "dispatch of %s: empty error message", what);
        CHECK(id == 0xdeadbeef, "dispatch of %s failed but wrote *out_task", what);
        printf("ok: dispatch %-44s -> %s: %s\n", what, dist_status_str(st), m);
    } else {
        CHECK(id != 0, "dispatch of %s gave task id 0", what);
        EXPECT_OK(dist_worker_wait(w, id));
        printf("ok: dispatch %-44s -> DIST_OK (task %#llx)\n", what, (unsigned long long)id);
    }
}

static void check_dispatch_errors(void) {
    SECTION("dispatch validation (2 SUB thread workers, no NEXT_LEVEL worker)");
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, count_calls, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, count_calls, NULL));

    static DistTensor many[101];
    for (int i = 0; i < 101; i++) many[i] = tensor(0x1000 + 64 * (uint64_t)i, 1 + i % 5, (uint8_t)(i % 9));
    static uint64_t scalars[600];
    for (int i = 0; i < 600; i++) scalars[i] = (uint64_t)i;
    DistTensor one = tensor(0x1000, 2, DIST_FLOAT32);
    int accepted = 0;

    DistTask t = sub_task(NULL, 0);
    EXPECT_ERR(dist_worker_dispatch(w, NULL, NULL), DIST_ERR_NULL_ARGUMENT);
    expect_dispatch(w, &t, DIST_OK, "no args, out pointer NULL-able");
    accepted++;
    EXPECT_OK(dist_worker_dispatch(w, &t, NULL));
    accepted++;
    EXPECT_OK(dist_worker_drain(w));

    t.worker_type = 7;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "worker_type 7");
    t.worker_type = -1;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "worker_type -1");
    t.worker_type = DIST_WORKER_NEXT_LEVEL;
    expect_dispatch(w, &t, DIST_ERR_NO_WORKER, "NEXT_LEVEL with no such worker");

    DistTaskArgs a;
    memset(&a, 0, sizeof a);
    t = sub_task(&a, 1);

    DistTensor bad = one;
    a.tensors = &bad;
    a.tensor_count = 1;
    bad.dtype = 9;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "dtype 9");
    bad.dtype = 255;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "dtype 255");
    bad = one;
    bad.ndims = 0; /* a 0-d tensor: one element, shapes ignored */
    bad.shapes[0] = 0;
    expect_dispatch(w, &t, DIST_OK, "ndims 0 (a 0-d tensor)");
    accepted++;
    bad.ndims = 6;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "ndims 6");
    bad.ndims = UINT32_MAX;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "ndims UINT32_MAX");
    bad = one;

    DistTensorArgType tag = 5;
    a.tags = &tag;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "tag 5");
    tag = -1;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "tag -1");
    tag = DIST_ARG_NO_DEP;
    expect_dispatch(w, &t, DIST_OK, "tag NO_DEP");
    accepted++;
    a.tags = NULL;

    a.tensors = NULL;
    a.tensor_count = 1;
    expect_dispatch(w, &t, DIST_ERR_NULL_ARGUMENT, "tensor_count 1, tensors NULL");
    a.tensor_count = 0;
    a.scalars = NULL;
    a.scalar_count = 2;
    expect_dispatch(w, &t, DIST_ERR_NULL_ARGUMENT, "scalar_count 2, scalars NULL");
    a.tensor_count = UINT32_MAX;
    a.scalar_count = 0;
    expect_dispatch(w, &t, DIST_ERR_ARGS_TOO_LARGE, "tensor_count UINT32_MAX, tensors NULL");

    a.tensors = many;
    a.scalars = scalars;
    /* Past a mailbox's 4032 bytes, blobs go through the heap to library
       workers (these are THREAD workers); past 1 MiB they are refused. */
    a.tensor_count = 101;
    a.scalar_count = 0;
    expect_dispatch(w, &t, DIST_OK, "101 tensors (4048 bytes, through the heap)");
    accepted++;
    a.tensor_count = 100;
    a.scalar_count = 4;
    expect_dispatch(w, &t, DIST_OK, "100 tensors + 4 scalars (4040 bytes)");
    accepted++;
    a.tensor_count = 0;
    a.scalar_count = 131072; /* 8 + 8 * 131072 > 1 MiB; refused before the array is read */
    expect_dispatch(w, &t, DIST_ERR_ARGS_TOO_LARGE, "131072 scalars (over 1 MiB)");
    a.tensor_count = 100;
    a.scalar_count = 3;
    expect_dispatch(w, &t, DIST_OK, "100 tensors + 3 scalars (exactly 4032)");
    accepted++;
    a.tensor_count = 0;
    a.scalar_count = 503;
    expect_dispatch(w, &t, DIST_OK, "503 scalars (exactly 4032)");
    accepted++;

    /* Groups: two SUB workers exist. */
    DistTaskArgs members[3];
    for (int i = 0; i < 3; i++) {
        memset(&members[i], 0, sizeof members[i]);
        members[i].tensors = &one;
        members[i].tensor_count = 1;
    }
    t = sub_task(members, 3);
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "group of 3 on 2 SUB workers");
    t.group_size = 5000;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "group of 5000");
    t = sub_task(NULL, 2);
    expect_dispatch(w, &t, DIST_ERR_NULL_ARGUMENT, "group of 2 with args NULL");
    members[1].scalars = scalars;
    members[1].scalar_count = 131072;
    t = sub_task(members, 2);
    expect_dispatch(w, &t, DIST_ERR_ARGS_TOO_LARGE, "group member 1 with over 1 MiB");
    members[1].scalar_count = 0;
    members[1].scalars = NULL;
    members[1].tensors = &bad;
    bad.dtype = 9;
    expect_dispatch(w, &t, DIST_ERR_INVALID_ARGUMENT, "group member 1 with dtype 9");
    bad = one;
    expect_dispatch(w, &t, DIST_OK, "group of 2 on 2 SUB workers");
    accepted += 2;

    SECTION("after start");
    int32_t pid = 0;
    void *mb = map_mailbox();
    EXPECT_ERR(dist_worker_add_thread(w, DIST_WORKER_SUB, count_calls, NULL), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_spawn(w, DIST_WORKER_SUB, count_calls, NULL, &pid), DIST_ERR_BAD_STATE);
    EXPECT_OK(dist_worker_start(w));
    printf("ok: dist_worker_start again is a no-op\n");

    SECTION("task ids");
    EXPECT_ERR(dist_worker_wait(w, 0), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_wait(w, 0x7777777700001234ull), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_wait(w, UINT64_MAX), DIST_ERR_INVALID_ARGUMENT);
    DistTaskId id = 0;
    t = sub_task(NULL, 0);
    EXPECT_OK(dist_worker_dispatch(w, &t, &id));
    accepted++;
    EXPECT_OK(dist_worker_wait(w, id));
    EXPECT_OK(dist_worker_wait(w, id));
    printf("ok: a finished task can be waited for twice\n");
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_ERR(dist_worker_wait(w, id), DIST_ERR_INVALID_ARGUMENT);
    printf("ok: after drain the task id is unknown\n");

    EXPECT_OK(dist_worker_drain(w));
    CHECK(atomic_load(&g_calls) == accepted,
          "callables ran %d times, expected %d (a rejected task reached a worker?)",
          atomic_load(&g_calls), accepted);
    printf("ok: callables ran exactly %d times: rejected tasks never ran\n", accepted);
    EXPECT_OK(dist_worker_shutdown(w));
    munmap(mb, DIST_MAILBOX_SIZE);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    check_layout();
    check_status_names();
    check_null_tolerant();
    check_null_worker();
    check_child_serve();
    check_dispatch_errors();
    printf("api_errors: all checks passed\n");
    return 0;
}
