/* placement: dist_worker_dispatch_on through the C API.
 *
 * Proves: each member runs on the worker it names (index = registration
 * order within the type), for single tasks and groups; NULL indices are
 * DIST_ERR_NULL_ARGUMENT; out-of-range and repeated indices are
 * DIST_ERR_INVALID_ARGUMENT and nothing runs. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>

#include "check.h"

#define TASKS 60
static _Atomic int ran_on[TASKS + 2];

static int32_t record(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)callable; (void)c;
    int me = (int)(intptr_t)user;
    atomic_store(&ran_on[a->scalars[0]], me + 1); /* 0 = never ran */
    return 0;
}

int main(void) {
    DistWorker *w;
    EXPECT_OK(dist_worker_create(NULL, &w));
    for (intptr_t me = 0; me < 3; me++) EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, record, (void *)me));
    /* A NEXT_LEVEL worker registered in between: indices count per type. */
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, record, (void *)(intptr_t)9));

    SECTION("each member runs on the worker it names");
    uint64_t tags[TASKS + 2];
    DistTaskArgs args[2];
    memset(args, 0, sizeof args);
    for (uint32_t t = 0; t < TASKS; t++) {
        tags[t] = t;
        args[0].scalars = &tags[t];
        args[0].scalar_count = 1;
        DistTask task = {DIST_WORKER_SUB, 1, {24, 3, false, false}, args, 1};
        uint32_t on = t % 3;
        EXPECT_OK(dist_worker_dispatch_on(w, &task, &on, NULL));
    }
    tags[TASKS] = TASKS;
    tags[TASKS + 1] = TASKS + 1;
    args[0].scalars = &tags[TASKS];
    args[1].scalars = &tags[TASKS + 1];
    args[0].scalar_count = args[1].scalar_count = 1;
    DistTask group = {DIST_WORKER_SUB, 1, {24, 3, false, false}, args, 2};
    uint32_t on2[2] = {2, 0};
    DistTaskId gid;
    EXPECT_OK(dist_worker_dispatch_on(w, &group, on2, &gid));
    EXPECT_OK(dist_worker_drain(w));
    for (int t = 0; t < TASKS; t++)
        CHECK(atomic_load(&ran_on[t]) == t % 3 + 1, "task %d ran on worker %d", t, atomic_load(&ran_on[t]) - 1);
    CHECK(atomic_load(&ran_on[TASKS]) == 3 && atomic_load(&ran_on[TASKS + 1]) == 1,
          "group members ran on %d and %d", atomic_load(&ran_on[TASKS]) - 1, atomic_load(&ran_on[TASKS + 1]) - 1);
    printf("ok: %d placed tasks and a group [2, 0] ran where they were placed\n", TASKS);

    SECTION("bad placements are refused and never run");
    for (int t = 0; t < TASKS + 2; t++) atomic_store(&ran_on[t], 0);
    args[0].scalars = &tags[0];
    DistTask one = {DIST_WORKER_SUB, 1, {24, 3, false, false}, args, 1};
    uint32_t three = 3, twice[2] = {1, 1};
    EXPECT_ERR(dist_worker_dispatch_on(w, &one, NULL, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_dispatch_on(w, &one, &three, NULL), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_dispatch_on(w, &group, twice, NULL), DIST_ERR_INVALID_ARGUMENT);
    one.worker_type = DIST_WORKER_NEXT_LEVEL;
    uint32_t zero = 0;
    EXPECT_OK(dist_worker_dispatch_on(w, &one, &zero, NULL));
    one.worker_type = DIST_WORKER_NEXT_LEVEL;
    EXPECT_ERR(dist_worker_dispatch_on(w, &one, &three, NULL), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_drain(w));
    CHECK(atomic_load(&ran_on[0]) == 10, "the NEXT_LEVEL task ran on %d", atomic_load(&ran_on[0]) - 1);
    for (int t = 1; t < TASKS + 2; t++) CHECK(atomic_load(&ran_on[t]) == 0, "a refused task %d ran", t);
    EXPECT_OK(dist_worker_shutdown(w));
    printf("placement: all checks passed\n");
    return 0;
}
