/* lifecycle: the library owns no thread before start and leaves no thread,
 * child or zombie behind after shutdown.
 *
 * Proves:
 * 1. Threads (/proc/self/task): unchanged by create, spawn and add_thread;
 *    more after start; back to the starting count after shutdown.
 * 2. After shutdown no child remains: waitpid(-1, WNOHANG) fails with ECHILD
 *    and no process in /proc has our pid as its parent.
 * 3. Shutdown returns the first failure not yet drained (TASK_FAILED) when a
 *    task failed and drain was never called, and still reaps everything.
 * 4. Children spawned but never started are reaped by shutdown too; a
 *    worker created and shut down at once is fine. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "proc.h"

static int32_t ok_or_fail(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)a; (void)c;
    return callable == 99 ? 31 : 0;
}

/* A joined thread may linger in /proc for a moment after pthread_join
 * returned (the kernel releases it just after waking the joiner): poll with a
 * generous limit instead of asserting an instant. */
static int threads_settle_to(int want) {
    int n = count_threads();
    for (int i = 0; i < 1000 && n != want; i++) {
        nap_ms(10);
        n = count_threads();
    }
    return n;
}

/* Number of processes in /proc whose parent is us. */
static int count_our_children(void) {
    DIR *d = opendir("/proc");
    CHECK(d != NULL, "opendir /proc: %s", strerror(errno));
    pid_t me = getpid();
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* exited meanwhile */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')'); /* comm may contain spaces */
        int ppid = 0;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == me) {
            printf("   child in /proc: pid %s state %c\n", e->d_name, state);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void expect_no_children(const char *when) {
    errno = 0;
    int r = waitpid(-1, NULL, WNOHANG);
    CHECK(r == -1 && errno == ECHILD, "%s: waitpid(-1, WNOHANG) = %d (errno %d): a child or zombie remains", when, r, errno);
    int n = count_our_children();
    CHECK(n == 0, "%s: %d processes in /proc still have us as parent", when, n);
    printf("ok: %s: no child, no zombie (ECHILD, nothing in /proc)\n", when);
}

static DistTaskId dispatch(DistWorker *w, DistWorkerType ty, uint64_t callable) {
    DistTask t;
    memset(&t, 0, sizeof t);
    t.worker_type = ty;
    t.callable = callable;
    t.config.block_dim = 24;
    t.config.aicpu_thread_num = 3;
    DistTaskId id = 0;
    EXPECT_OK(dist_worker_dispatch(w, &t, &id));
    return id;
}

static void full_cycle(void) {
    SECTION("1-2. threads and children over a full life");
    int base = count_threads();
    printf("   threads at start: %d\n", base);
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    CHECK(count_threads() == base, "create started a thread (%d -> %d)", base, count_threads());
    int32_t pids[3];
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, ok_or_fail, NULL, &pids[0]));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, ok_or_fail, NULL, &pids[1]));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, ok_or_fail, NULL, &pids[2]));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, ok_or_fail, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, ok_or_fail, NULL));
    int n = count_threads();
    CHECK(n == base, "a library thread exists before start: %d -> %d", base, n);
    printf("ok: after create + 3 spawns + 2 add_thread: still %d threads\n", n);
    CHECK(count_our_children() == 3, "expected the 3 spawned children in /proc");
    printf("ok: the 3 children %d %d %d are visible in /proc\n", pids[0], pids[1], pids[2]);

    EXPECT_OK(dist_worker_start(w));
    n = count_threads();
    CHECK(n > base, "start created no thread (%d)", n);
    printf("ok: after start: %d threads (> %d)\n", n, base);
    for (int i = 0; i < 200; i++) dispatch(w, i % 2 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL, 1);
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_OK(dist_worker_shutdown(w));
    n = threads_settle_to(base);
    CHECK(n == base, "after shutdown: %d threads, expected %d", n, base);
    printf("ok: after shutdown: back to %d threads\n", n);
    expect_no_children("after shutdown");
}

static void undrained_failure(void) {
    SECTION("3. shutdown reports an undrained failure");
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, ok_or_fail, NULL, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, ok_or_fail, NULL));
    dispatch(w, DIST_WORKER_SUB, 1);
    dispatch(w, DIST_WORKER_SUB, 99);
    dispatch(w, DIST_WORKER_NEXT_LEVEL, 1);
    EXPECT_ERR(dist_worker_shutdown(w), DIST_ERR_TASK_FAILED);
    CHECK(strstr(dist_last_error_message(), "31") != NULL, "message lacks the code 31");
    expect_no_children("after a failing shutdown");

    /* A failure already reported by drain is not reported again. */
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, ok_or_fail, NULL, NULL));
    dispatch(w, DIST_WORKER_SUB, 99);
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_TASK_FAILED);
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: a drained failure is not reported again by shutdown\n");
    expect_no_children("after drain + shutdown");
}

static void never_started(void) {
    SECTION("4. shutdown before start");
    int base = count_threads();
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    for (int i = 0; i < 3; i++) EXPECT_OK(dist_worker_spawn(w, i % 2, ok_or_fail, NULL, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, ok_or_fail, NULL));
    CHECK(count_our_children() == 3, "expected 3 spawned children");
    EXPECT_OK(dist_worker_shutdown(w));
    expect_no_children("spawned, never started, shut down");
    CHECK(threads_settle_to(base) == base, "threads changed");

    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: create + shutdown with nothing registered\n");
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, ok_or_fail, NULL));
    EXPECT_OK(dist_worker_start(w));
    EXPECT_OK(dist_worker_shutdown(w));
    CHECK(threads_settle_to(base) == base, "started but idle pool left threads behind");
    printf("ok: start + shutdown without any task leaves no thread\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    expect_no_children("at program start");
    full_cycle();
    undrained_failure();
    never_started();
    printf("lifecycle: all checks passed\n");
    return 0;
}
