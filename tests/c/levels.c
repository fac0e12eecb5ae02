/* levels: a DistWorker drives DistWorkers, through the C API.
 *
 * L4 (this process) -> L3 in THREAD mode (dist_worker_add_level) and L3 in
 * PROCESS mode (dist_worker_spawn_level), each with two spawned SUB
 * children. Proves: outer tasks placed on either level run inner tasks
 * that write the top's heap memory (no copies); a failure at the bottom
 * comes up with its path; bad registrations are refused; shutting down
 * the top leaves no process behind. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* SUB callable 1: add scalars[1] to the u64 at scalars[0]; 5: fail. */
static int32_t leaf(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)c;
    if (callable == 1) {
        *(uint64_t *)(uintptr_t)a->scalars[0] += a->scalars[1];
        return 0;
    }
    if (callable == 5) {
        dist_child_set_error_message("disk full");
        return 5;
    }
    return 0;
}

/* Forwards the outer task to one SUB task of the inner level. */
static int32_t forward(void *user, DistWorker *inner, uint64_t callable, const DistTaskView *a,
                       const DistCallConfig *c) {
    (void)user; (void)c;
    DistTaskArgs args = {NULL, NULL, 0, a->scalars, (uint32_t)a->scalar_count};
    DistTask t = {DIST_WORKER_SUB, callable, {24, 3, false, false}, &args, 1};
    DistTaskId id;
    if (dist_worker_dispatch(inner, &t, &id) != DIST_OK) return 1;
    (void)dist_worker_wait(inner, id); /* the library's drain reports it */
    return 0;
}

static int32_t two_children(void *user, DistWorker *inner) {
    (void)user;
    for (int i = 0; i < 2; i++)
        if (dist_worker_spawn(inner, DIST_WORKER_SUB, leaf, NULL, NULL) != DIST_OK) return 7;
    return 0;
}

static void run(DistWorker *top, uint32_t on, uint64_t callable, uint64_t *slot, uint64_t add, DistStatus want) {
    uint64_t s[2] = {(uint64_t)(uintptr_t)slot, add};
    DistTaskArgs args = {NULL, NULL, 0, s, 2};
    DistTask t = {DIST_WORKER_NEXT_LEVEL, callable, {24, 3, false, false}, &args, 1};
    DistTaskId id;
    EXPECT_OK(dist_worker_dispatch_on(top, &t, &on, &id));
    DistStatus st = dist_worker_wait(top, id);
    CHECK(st == want, "outer task on level %u returned %s", on, dist_status_str(st));
}

int main(void) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    o.level = 4;
    o.heap_ring_size = 1 << 20;
    DistWorker *top;
    EXPECT_OK(dist_worker_create(&o, &top));

    SECTION("registration");
    DistWorker *l3;
    o.level = 3;
    EXPECT_OK(dist_worker_create(&o, &l3));
    EXPECT_OK(two_children(NULL, l3) == 0 ? DIST_OK : DIST_ERR_OS);
    EXPECT_ERR(dist_worker_add_level(top, top, forward, NULL), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_add_level(top, l3, NULL, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_OK(dist_worker_add_level(top, l3, forward, NULL)); /* L3 worker 0 (thread) */
    EXPECT_ERR(dist_worker_add_level(top, l3, forward, NULL), DIST_ERR_INVALID_ARGUMENT);
    int32_t pid = 0;
    EXPECT_OK(dist_worker_spawn_level(top, NULL, two_children, forward, NULL, &pid)); /* L3 worker 1 */
    CHECK(pid > 0, "no pid");

    SECTION("outer tasks on both levels write the top's memory");
    uint32_t shape[1] = {1};
    DistTensor slot;
    EXPECT_OK(dist_worker_alloc(top, shape, 1, DIST_UINT64, &slot));
    uint64_t *counter = (uint64_t *)(uintptr_t)slot.data;
    for (uint64_t i = 1; i <= 10; i++) run(top, (uint32_t)(i % 2), 1, counter, i, DIST_OK);
    CHECK(*counter == 55, "counter %llu, expected 55", (unsigned long long)*counter);
    printf("ok: 10 outer tasks on a THREAD and a PROCESS level added up to 55 in the top's heap\n");

    SECTION("a failure comes up with its path");
    run(top, 1, 5, counter, 0, DIST_ERR_TASK_FAILED);
    const char *m = dist_last_error_message();
    printf("   %s\n", m);
    CHECK(strstr(m, "L4 task 0x") && strstr(m, "-> L3 worker 1 (child pid") &&
              strstr(m, "SUB worker") && strstr(m, "returned error 5 from callable 0x5: disk full"),
          "path missing in \"%s\"", m);
    run(top, 0, 5, counter, 0, DIST_ERR_TASK_FAILED);
    CHECK(strstr(dist_last_error_message(), "-> L3 worker 0 (thread): task 0x") != NULL,
          "THREAD level path missing: %s", dist_last_error_message());
    dist_worker_drain(top);

    SECTION("shutting down the top leaves nothing");
    EXPECT_OK(dist_worker_shutdown(top));
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "a child of the top was left");
    CHECK(kill(pid, 0) == -1 && errno == ESRCH, "the level process %d was left", (int)pid);
    printf("levels: all checks passed\n");
    return 0;
}
