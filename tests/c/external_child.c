/* external_child: a PROCESS worker whose child the caller forks and reaps
 * itself, served by dist_child_serve on a caller-mapped mailbox.
 *
 * Proves: dist_worker_add_process works with a caller-owned MAP_SHARED
 * mailbox; tasks of both types reach the caller's children with their args;
 * a failing callable gives DIST_ERR_TASK_FAILED with the code; shutdown
 * writes SHUTDOWN to the caller's mailboxes, so dist_child_serve returns
 * DIST_OK and each child exits 0 under the caller's own waitpid; the library
 * does not reap children it did not fork. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define FAIL_CALLABLE 66
#define FAIL_CODE 4321

typedef struct {
    DistWorkerType type;
    unsigned served; /* the child's own copy */
} ChildCtx;

/* Each task carries its expected callable in scalar 0 and its type in scalar 1. */
static int32_t child_fn(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    ChildCtx *ctx = user;
    ctx->served++;
    if (callable == FAIL_CALLABLE) return FAIL_CODE;
    if (a->scalar_count != 2 || a->scalars[0] != callable) return 1;
    if ((int64_t)a->scalars[1] != ctx->type) return 2;
    if (a->tensor_count != 1 || a->tensors[0].data != callable * 16 || a->tensors[0].ndims != 2 ||
        a->tensors[0].shapes[0] != 3 || a->tensors[0].shapes[1] != 5 || a->tensors[0].dtype != DIST_INT64)
        return 3;
    if (c->block_dim != (int32_t)(callable % 40) || c->aicpu_thread_num != 2 || !c->enable_dump_tensor)
        return 4;
    return 0;
}

static pid_t fork_server(void *mailbox, DistWorkerType ty) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave a server behind */
        ChildCtx ctx = {ty, 0};
        DistStatus st = dist_child_serve(mailbox, child_fn, &ctx);
        if (st != DIST_OK) fprintf(stderr, "child: dist_child_serve: %s: %s\n", dist_status_str(st), dist_last_error_message());
        _exit(st == DIST_OK ? 0 : 100 + st);
    }
    return pid;
}

static DistTaskId dispatch(DistWorker *w, DistWorkerType ty, uint64_t callable) {
    DistTensor t;
    memset(&t, 0, sizeof t);
    t.data = callable * 16;
    t.ndims = 2;
    t.shapes[0] = 3;
    t.shapes[1] = 5;
    t.dtype = DIST_INT64;
    uint64_t scalars[2] = {callable, (uint64_t)ty};
    DistTaskArgs a = {&t, NULL, 1, scalars, 2};
    DistTask task;
    memset(&task, 0, sizeof task);
    task.worker_type = ty;
    task.callable = callable;
    task.config.block_dim = (int32_t)(callable % 40);
    task.config.aicpu_thread_num = 2;
    task.config.enable_dump_tensor = true;
    task.args = &a;
    task.group_size = 1;
    DistTaskId id = 0;
    EXPECT_OK(dist_worker_dispatch(w, &task, &id));
    return id;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *mb[2];
    pid_t pid[2];
    for (int ty = 0; ty < 2; ty++) {
        mb[ty] = mmap(NULL, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(mb[ty] != MAP_FAILED, "mmap: %s", strerror(errno));
        pid[ty] = fork_server(mb[ty], ty);
    }
    printf("ok: forked NEXT_LEVEL child %d and SUB child %d, each serving its own mailbox\n", pid[0], pid[1]);

    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_NEXT_LEVEL, mb[0]));
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_SUB, mb[1]));

    SECTION("tasks on caller-forked children");
    DistTaskId ids[200];
    for (int i = 0; i < 200; i++) ids[i] = dispatch(w, i % 2, 1000 + (uint64_t)i);
    for (int i = 0; i < 200; i++) {
        DistStatus st = dist_worker_wait(w, ids[i]);
        CHECK(st == DIST_OK, "task %d: wait returned %s", i, dist_status_str(st));
    }
    EXPECT_OK(dist_worker_drain(w));
    printf("ok: 200 tasks checked their args in the children and succeeded\n");

    SECTION("a failing task");
    for (int ty = 0; ty < 2; ty++) {
        DistTaskId id = dispatch(w, ty, FAIL_CALLABLE);
        EXPECT_ERR(dist_worker_wait(w, id), DIST_ERR_TASK_FAILED);
        CHECK(strstr(dist_last_error_message(), "4321") != NULL, "message does not name the code 4321");
    }
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_TASK_FAILED);
    EXPECT_OK(dist_worker_drain(w));
    dispatch(w, DIST_WORKER_SUB, 7);
    EXPECT_OK(dist_worker_drain(w));
    printf("ok: the workers keep serving after a failure\n");

    SECTION("shutdown");
    EXPECT_OK(dist_worker_shutdown(w));
    for (int ty = 0; ty < 2; ty++) {
        int32_t state = __atomic_load_n((int32_t *)mb[ty], __ATOMIC_ACQUIRE);
        CHECK(state == DIST_MAILBOX_SHUTDOWN, "mailbox %d holds state %d after shutdown, expected SHUTDOWN", ty, state);
        int status = 0;
        pid_t r = waitpid(pid[ty], &status, 0);
        CHECK(r == pid[ty], "waitpid(%d): %s (the library must not reap a child it did not fork)", pid[ty], strerror(errno));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: exited %d / signal %d, expected exit 0", pid[ty],
              WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        printf("ok: child %d saw SHUTDOWN and exited 0\n", pid[ty]);
        munmap(mb[ty], DIST_MAILBOX_SIZE);
    }
    printf("external_child: all checks passed\n");
    return 0;
}
