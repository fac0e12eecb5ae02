/* faults: the failure promises of the README, one section each
 * (`faults <section>` runs one; no argument runs them all).
 *
 * lifeline      Spawned children die within 1 s of their host's SIGKILL,
 *               busy or idle, whichever thread spawned them; a main thread
 *               that leaves with pthread_exit kills none of them.
 * no_pidfd      With pidfd_open refused (a seccomp filter), a child that dies
 *               mid-task, spawned or caller-owned, is noticed within 100 ms.
 * deadline      Shutdown returns within shutdown_timeout_ms plus the 200 ms
 *               grace with three stopped children, a hung child and a
 *               stuck pool thread; the thread exits once its callable returns.
 * fork_copy     In a copy made by fork() after start, every call but shutdown
 *               is BAD_STATE; the copy's shutdown leaves the parent's 8000
 *               tasks and children undisturbed.
 * registration  A mailbox registered twice or overlapping is INVALID_ARGUMENT;
 *               after start, registration is BAD_STATE whatever the mailbox holds.
 * failed_start  After a failed start every call but shutdown is SHUT_DOWN.
 * nested        A callable waiting on its own runtime makes progress or gets
 *               BAD_STATE naming the deadlock; drain and shutdown from a
 *               callable are BAD_STATE.
 * concurrent    Threads blocked in wait/drain when shutdown starts return
 *               their tasks' statuses before the worker is freed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "proc.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* callable 0: no-op; 1: sleep scalar[0] ms; 2: fail with 9; 3: _exit(3). */
static int32_t work(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)c;
    switch (callable) {
    case 1: nap_ms(a->scalar_count > 0 ? (long)a->scalars[0] : 1000); return 0;
    case 2: return 9;
    case 3: _exit(3);
    default: return 0;
    }
}

static DistTask task_of(DistWorkerType type, uint64_t callable, DistTaskArgs *args) {
    DistTask t = {type, callable, {24, 3, false, false}, args, 1};
    return t;
}

static DistStatus dispatch(DistWorker *w, DistWorkerType type, uint64_t callable, uint64_t ms, DistTaskId *id) {
    DistTaskArgs a = {NULL, NULL, 0, &ms, 1};
    DistTask t = task_of(type, callable, &a);
    return dist_worker_dispatch(w, &t, id);
}

static DistWorker *make(uint32_t shutdown_ms) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    o.shutdown_timeout_ms = shutdown_ms;
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(&o, &w));
    return w;
}

/* Waits up to `ms` for `pid`, an orphan re-parented to us (subreaper). */
static int reaped_within(pid_t pid, long ms) {
    double end = now_s() + ms / 1000.0;
    while (now_s() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return 1;
        nap_ms(2);
    }
    return 0;
}

/* ---- lifeline ---------------------------------------------------------- */

struct spawner { DistWorker *w; pid_t pids[2]; };

static void *spawn_two(void *p) {
    struct spawner *s = p;
    for (int i = 0; i < 2; i++)
        EXPECT_OK(dist_worker_spawn(s->w, DIST_WORKER_SUB, work, NULL, &s->pids[i]));
    return NULL;
}

/* Host: two children forked by the main thread, two by another thread; two
 * of them busy in a 60 s callable. Reports the four pids, then waits to die. */
static void busy_host(int out) {
    DistWorker *w = make(10000);
    struct spawner main_s = {w, {0, 0}}, other = {w, {0, 0}};
    pthread_t t; /* registered first, so the busy tasks go to these two */
    pthread_create(&t, NULL, spawn_two, &other);
    pthread_join(t, NULL);
    spawn_two(&main_s);
    EXPECT_OK(dist_worker_start(w));
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 1, 60000, NULL));
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 1, 60000, NULL));
    pid_t pids[4] = {main_s.pids[0], main_s.pids[1], other.pids[0], other.pids[1]};
    nap_ms(100); /* the two tasks are running; the others sleep */
    CHECK(write(out, pids, sizeof pids) == (ssize_t)sizeof pids, "write");
    for (;;) pause();
}

struct exit_host { DistWorker *w; int out; };

static void *after_main_left(void *p) {
    struct exit_host *h = p;
    nap_ms(300); /* the main thread has gone by now */
    int32_t failures = 0;
    for (int i = 0; i < 200; i++) {
        DistTaskId id;
        if (dispatch(h->w, DIST_WORKER_SUB, 0, 0, &id) != DIST_OK || dist_worker_wait(h->w, id) != DIST_OK) {
            fprintf(stderr, "task %d: %s\n", i, dist_last_error_message());
            failures++;
        }
    }
    DistStatus s = dist_worker_shutdown(h->w);
    if (s != DIST_OK) failures += 1000;
    CHECK(write(h->out, &failures, sizeof failures) == (ssize_t)sizeof failures, "write");
    exit(0);
}

static void section_lifeline(void) {
    SECTION("lifeline: busy and idle children die with their host, whichever thread spawned them");
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "subreaper: %s", strerror(errno));
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t host = fork();
    if (host == 0) { close(p[0]); busy_host(p[1]); }
    pid_t pids[4];
    CHECK(read(p[0], pids, sizeof pids) == (ssize_t)sizeof pids, "host did not report");
    CHECK(kill(host, SIGKILL) == 0 && waitpid(host, NULL, 0) == host, "kill host");
    double died = now_s();
    for (int i = 0; i < 4; i++)
        CHECK(reaped_within(pids[i], 1000), "child %d (pid %d) outlived its host by 1 s", i, (int)pids[i]);
    printf("ok: 4 children (2 busy, 2 forked by a second thread) gone %.1f ms after the host's SIGKILL\n",
           (now_s() - died) * 1e3);

    SECTION("lifeline: a main thread leaving with pthread_exit kills no child");
    host = fork();
    if (host == 0) {
        close(p[0]);
        static struct exit_host h;
        h.w = make(10000);
        h.out = p[1];
        for (int i = 0; i < 2; i++) EXPECT_OK(dist_worker_spawn(h.w, DIST_WORKER_SUB, work, NULL, NULL));
        EXPECT_OK(dist_worker_start(h.w));
        pthread_t t;
        pthread_create(&t, NULL, after_main_left, &h);
        pthread_exit(NULL);
    }
    int32_t failures = -1;
    CHECK(read(p[0], &failures, sizeof failures) == (ssize_t)sizeof failures, "host did not report");
    CHECK(failures == 0, "%d task failures after the main thread left", failures);
    int status;
    CHECK(waitpid(host, &status, 0) == host && WIFEXITED(status) && WEXITSTATUS(status) == 0, "host exit");
    printf("ok: 200 tasks ran on children spawned by a main thread that had left\n");
    close(p[0]);
    close(p[1]);
}

/* ---- no_pidfd ---------------------------------------------------------- */

static void refuse_pidfd_open(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs: %s", strerror(errno));
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp: %s", strerror(errno));
    CHECK(syscall(SYS_pidfd_open, getpid(), 0) == -1 && errno == ENOSYS, "pidfd_open still works");
}

static void no_pidfd_body(void) {
    refuse_pidfd_open();
    printf("ok: pidfd_open now fails with ENOSYS\n");
    DistWorker *w = make(10000);
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    /* A caller-owned child on a mailbox of our own, its pid named. */
    void *mb = mmap(NULL, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(mb != MAP_FAILED, "mmap");
    pid_t own = fork();
    if (own == 0) _exit(dist_child_serve(mb, work, NULL) == DIST_OK ? 0 : 1);
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_NEXT_LEVEL, mb));
    EXPECT_OK(dist_worker_set_process_pid(w, mb, own));
    EXPECT_OK(dist_worker_start(w));
    for (int round = 0; round < 2; round++) {
        DistWorkerType type = round == 0 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL;
        DistTaskId id;
        EXPECT_OK(dispatch(w, type, 3, 0, &id)); /* the child _exits mid-task */
        double t0 = now_s();
        EXPECT_ERR(dist_worker_wait(w, id), DIST_ERR_CHILD_DIED);
        double ms = (now_s() - t0) * 1e3;
        CHECK(ms < 100, "the death took %.1f ms to notice", ms);
        printf("ok: %s child's death noticed in %.1f ms without pidfd\n",
               round == 0 ? "a spawned" : "a caller-owned", ms);
    }
    /* The other spawned child still serves. */
    DistTaskId id;
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 0, 0, &id));
    EXPECT_OK(dist_worker_wait(w, id));
    dist_worker_drain(w);
    EXPECT_OK(dist_worker_shutdown(w));
    waitpid(own, NULL, 0);
}

static void section_no_pidfd(void) {
    SECTION("no_pidfd: deaths noticed without pidfd_open");
    pid_t p = fork();
    if (p == 0) { no_pidfd_body(); exit(0); }
    int status;
    CHECK(waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the no-pidfd run failed (status %#x)", status);
}

/* ---- deadline ---------------------------------------------------------- */

static volatile int stuck_returned;

static int32_t stuck(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)callable; (void)a; (void)c;
    nap_ms(1500);
    stuck_returned = 1;
    return 0;
}

static void section_deadline(void) {
    SECTION("deadline: one shutdown deadline however many workers misbehave");
    int before = count_threads();
    const uint32_t timeout = 600;
    DistWorker *w = make(timeout);
    pid_t stopped[3];
    for (int i = 0; i < 3; i++) EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, &stopped[i]));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL)); /* idle, answers SHUTDOWN */
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, stuck, NULL));
    EXPECT_OK(dist_worker_start(w));
    for (int i = 0; i < 3; i++) CHECK(kill(stopped[i], SIGSTOP) == 0, "SIGSTOP");
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 1, 60000, NULL)); /* to the first child: stopped */
    EXPECT_OK(dispatch(w, DIST_WORKER_NEXT_LEVEL, 0, 0, NULL)); /* the stuck thread */
    nap_ms(50);
    double t0 = now_s();
    DistStatus s = dist_worker_shutdown(w);
    double took = (now_s() - t0) * 1e3;
    printf("shutdown: %s after %.0f ms: %s\n", dist_status_str(s), took, dist_last_error_message());
    CHECK(s == DIST_ERR_TIMEOUT, "expected DIST_ERR_TIMEOUT");
    CHECK(took < timeout + 200 + 150, "shutdown took %.0f ms, past %u ms + 200 ms grace", took, timeout);
    for (int i = 0; i < 3; i++)
        CHECK(waitpid(stopped[i], NULL, WNOHANG) == -1 && errno == ECHILD, "stopped child %d not reaped", i);
    printf("ok: 3 stopped children killed and reaped within the deadline plus grace\n");
    /* The stuck pool thread exits once its callable returns. */
    double end = now_s() + 5;
    while (now_s() < end && !(stuck_returned && count_threads() == before)) nap_ms(10);
    CHECK(stuck_returned && count_threads() == before,
          "the stuck pool thread did not exit after its callable returned (%d threads, %d before)",
          count_threads(), before);
    printf("ok: the pool thread stuck past the deadline exited when its callable returned\n");
}

/* ---- fork_copy --------------------------------------------------------- */

struct stream { DistWorker *w; int tasks; int failed; };

static void *stream_tasks(void *p) {
    struct stream *s = p;
    for (int i = 0; i < s->tasks; i++) {
        DistTaskId id;
        if (dispatch(s->w, i % 2 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL, 0, 0, &id) != DIST_OK ||
            dist_worker_wait(s->w, id) != DIST_OK) {
            if (s->failed++ < 3) fprintf(stderr, "parent task %d: %s\n", i, dist_last_error_message());
        }
        if (i % 1000 == 999) dist_worker_drain(s->w);
    }
    return NULL;
}

#define EXPECT_COPY_REFUSED(call)                                             \
    do {                                                                      \
        EXPECT_ERR(call, DIST_ERR_BAD_STATE);                                 \
        CHECK(strstr(dist_last_error_message(), "fork()") != NULL,            \
              "the message does not say why");                                \
    } while (0)

static void fork_copy_with(pid_t (*copier)(void), const char *how) {
    printf("-- copies made by %s\n", how);
    DistWorker *w = make(10000);
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, work, NULL));
    EXPECT_OK(dist_worker_start(w));
    struct stream s = {w, 8000, 0};
    pthread_t t;
    pthread_create(&t, NULL, stream_tasks, &s);
    nap_ms(5);
    pid_t copy = copier();
    if (copy == 0) {
        DistTaskId id = 0;
        uint32_t shape[1] = {4};
        DistTensor out;
        EXPECT_COPY_REFUSED(dispatch(w, DIST_WORKER_SUB, 0, 0, &id));
        EXPECT_COPY_REFUSED(dist_worker_wait(w, 1));
        EXPECT_COPY_REFUSED(dist_worker_drain(w));
        EXPECT_COPY_REFUSED(dist_worker_alloc(w, shape, 1, DIST_FLOAT32, &out));
        EXPECT_COPY_REFUSED(dist_worker_scope_begin(w));
        EXPECT_COPY_REFUSED(dist_worker_scope_end(w));
        EXPECT_COPY_REFUSED(dist_worker_start(w));
        EXPECT_COPY_REFUSED(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL));
        EXPECT_COPY_REFUSED(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
        EXPECT_COPY_REFUSED(dist_worker_task_tensor(w, 1, 0, 0, &out));
        double t0 = now_s();
        EXPECT_OK(dist_worker_shutdown(w));
        printf("ok: the copy's shutdown returned in %.2f ms\n", (now_s() - t0) * 1e3);
        _exit(0);
    }
    int status;
    CHECK(waitpid(copy, &status, 0) == copy && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the copy failed (status %#x)", status);
    pthread_join(t, NULL);
    CHECK(s.failed == 0, "%d of the parent's %d tasks failed", s.failed, s.tasks);
    printf("ok: all %d of the parent's tasks ran while its copy shut down\n", s.tasks);
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_OK(dist_worker_shutdown(w));
}

/* In a child the worker spawned, its copy of the worker: a callable that
   shuts it down frees only the child's private memory and serves on. */
static DistWorker *copied_w;

static int32_t shut_down_the_copy(void *user, uint64_t callable, const DistTaskView *a,
                                  const DistCallConfig *c) {
    (void)user; (void)a; (void)c;
    if (callable != 9) return 0;
    DistTaskId id;
    if (dispatch(copied_w, DIST_WORKER_SUB, 0, 0, &id) != DIST_ERR_BAD_STATE) return 1;
    if (dist_worker_shutdown(copied_w) != DIST_OK) return 2;
    return 0;
}

static void fork_copy_in_a_child(void) {
    printf("-- the copy inside a child the worker spawned\n");
    copied_w = make(5000);
    EXPECT_OK(dist_worker_spawn(copied_w, DIST_WORKER_SUB, shut_down_the_copy, NULL, NULL));
    EXPECT_OK(dist_worker_start(copied_w));
    DistTaskId id;
    EXPECT_OK(dispatch(copied_w, DIST_WORKER_SUB, 9, 0, &id));
    EXPECT_OK(dist_worker_wait(copied_w, id));
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(dispatch(copied_w, DIST_WORKER_SUB, 1, 1, &id));
        EXPECT_OK(dist_worker_wait(copied_w, id));
    }
    printf("ok: a callable shut down its child's copy of the worker; the child served on\n");
    EXPECT_OK(dist_worker_drain(copied_w));
    EXPECT_OK(dist_worker_shutdown(copied_w));
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_UNDERSCORE_FORK 1
#endif

static void section_fork_copy(void) {
    SECTION("fork_copy: a copy made by fork() after start touches nothing shared");
    fork_copy_with(fork, "fork()");
    fork_copy_in_a_child();
#ifdef HAVE_UNDERSCORE_FORK
    /* _Fork runs no atfork handlers: the copy is told by a page the kernel
       wipes in every copy. */
    fork_copy_with(_Fork, "_Fork()");
#endif
}

/* ---- registration ------------------------------------------------------ */

static void section_registration(void) {
    SECTION("registration: one mailbox, one worker; lifecycle checks first");
    char *mb = mmap(NULL, 3 * DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(mb != MAP_FAILED, "mmap");
    DistWorker *w = make(2000);
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_SUB, mb));
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_NEXT_LEVEL, mb), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb + 64), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb + DIST_MAILBOX_SIZE - 8), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_SUB, mb + DIST_MAILBOX_SIZE)); /* adjacent is fine */
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL));
    /* Another DistWorker of this process cannot take them either. */
    DistWorker *other = make(2000);
    EXPECT_ERR(dist_worker_add_process(other, DIST_WORKER_SUB, mb), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_add_process(other, DIST_WORKER_SUB, mb + DIST_MAILBOX_SIZE + 8), DIST_ERR_INVALID_ARGUMENT);
    /* Nor may a mailbox lie in the worker's own heap ring. */
    uint32_t bytes = 4096;
    DistTensor heap;
    EXPECT_OK(dist_worker_alloc(other, &bytes, 1, DIST_UINT8, &heap));
    EXPECT_ERR(dist_worker_add_process(other, DIST_WORKER_SUB, (void *)(uintptr_t)heap.data), DIST_ERR_INVALID_ARGUMENT);
    dist_worker_shutdown(other);
    EXPECT_OK(dist_worker_start(w));
    char *later = mb + 2 * DIST_MAILBOX_SIZE;
    *(volatile int32_t *)later = DIST_MAILBOX_TASK_DONE; /* not IDLE: still BAD_STATE */
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, later), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_set_process_pid(w, mb, getpid()), DIST_ERR_BAD_STATE);
    /* After start the life cycle answers first, whatever the arguments. */
    EXPECT_ERR(dist_worker_add_process(w, 7, mb + 4), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_add_thread(w, 7, NULL, NULL), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_add_level(w, NULL, NULL, NULL), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_spawn_level(w, NULL, NULL, NULL, NULL, NULL), DIST_ERR_BAD_STATE);
    /* Nobody serves the caller-owned mailboxes: shut down at once. */
    dist_worker_shutdown(w);
    munmap(mb, 3 * DIST_MAILBOX_SIZE);
}

/* ---- failed_start ------------------------------------------------------ */

static int32_t refuse_init(void *user) { (void)user; return 17; }

static void section_failed_start(void) {
    SECTION("failed_start: afterwards every call but shutdown is SHUT_DOWN");
    DistWorker *w = make(2000);
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_spawn_with_init(w, DIST_WORKER_SUB, refuse_init, work, NULL, NULL));
    EXPECT_ERR(dist_worker_start(w), DIST_ERR_CHILD_DIED);
    uint32_t shape[1] = {4};
    DistTensor out;
    void *mb = mmap(NULL, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_ERR(dist_worker_start(w), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dispatch(w, DIST_WORKER_SUB, 0, 0, NULL), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_wait(w, 1), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_alloc(w, shape, 1, DIST_FLOAT32, &out), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_scope_begin(w), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_scope_end(w), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_task_tensor(w, 1, 0, 0, &out), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_add_process(w, DIST_WORKER_SUB, mb), DIST_ERR_SHUT_DOWN);
    EXPECT_ERR(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL), DIST_ERR_SHUT_DOWN);
    EXPECT_OK(dist_worker_shutdown(w));
    munmap(mb, DIST_MAILBOX_SIZE);
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "a child was left");
}

/* ---- nested ------------------------------------------------------------ */

static DistWorker *nested_w;
static char nested_msg[512];

/* callable 10: dispatch a SUB no-op and wait for it; 11: drain; 12: shutdown.
 * Returns the status the nested call got (+100, so 100 = DIST_OK). */
static int32_t nesting(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)a; (void)c;
    DistStatus s;
    if (callable == 10) {
        DistTaskId id;
        s = dispatch(nested_w, DIST_WORKER_SUB, 0, 0, &id);
        if (s == DIST_OK) s = dist_worker_wait(nested_w, id);
    } else if (callable == 11) {
        s = dist_worker_drain(nested_w);
    } else if (callable == 12) {
        s = dist_worker_shutdown(nested_w);
    } else {
        return 0;
    }
    snprintf(nested_msg, sizeof nested_msg, "%s", s == DIST_OK ? "" : dist_last_error_message());
    if (s != DIST_OK) printf("   nested call: %s: %s\n", dist_status_str(s), nested_msg);
    return 100 + s;
}

static int32_t run_nested(uint64_t callable) {
    DistTaskId id;
    EXPECT_OK(dispatch(nested_w, DIST_WORKER_SUB, callable, 0, &id));
    DistStatus s = dist_worker_wait(nested_w, id);
    CHECK(s == DIST_ERR_TASK_FAILED, "the outer task returned %s", dist_status_str(s));
    const char *m = strstr(dist_last_error_message(), "returned error ");
    CHECK(m != NULL, "no code in \"%s\"", dist_last_error_message());
    return (int32_t)atoi(m + strlen("returned error ")) - 100;
}

static void section_nested(void) {
    SECTION("nested: waits from inside a callable never hang");
    nested_w = make(5000);
    EXPECT_OK(dist_worker_add_thread(nested_w, DIST_WORKER_SUB, nesting, NULL));
    EXPECT_OK(dist_worker_start(nested_w));
    int32_t got = run_nested(10);
    CHECK(got == DIST_ERR_BAD_STATE, "one SUB thread waiting on a SUB task got %d", got);
    CHECK(strstr(nested_msg, "deadlock") != NULL, "the message does not name the deadlock");
    printf("ok: the only SUB thread waiting for a SUB task got DIST_ERR_BAD_STATE\n");
    CHECK(run_nested(11) == DIST_ERR_BAD_STATE, "drain from a callable");
    CHECK(run_nested(12) == DIST_ERR_BAD_STATE, "shutdown from a callable");
    printf("ok: drain and shutdown from a callable are DIST_ERR_BAD_STATE\n");
    dist_worker_drain(nested_w);
    EXPECT_OK(dist_worker_shutdown(nested_w));

    nested_w = make(5000);
    EXPECT_OK(dist_worker_add_thread(nested_w, DIST_WORKER_SUB, nesting, NULL));
    EXPECT_OK(dist_worker_add_thread(nested_w, DIST_WORKER_SUB, nesting, NULL));
    EXPECT_OK(dist_worker_start(nested_w));
    DistTaskId id;
    EXPECT_OK(dispatch(nested_w, DIST_WORKER_SUB, 10, 0, &id));
    DistStatus s = dist_worker_wait(nested_w, id);
    CHECK(s == DIST_ERR_TASK_FAILED && strstr(dist_last_error_message(), "returned error 100") != NULL,
          "with a second SUB thread the nested wait should succeed: %s", dist_last_error_message());
    printf("ok: with a second SUB thread the nested wait made progress (DIST_OK inside)\n");
    /* Two callables that close a cycle: at most one of them is told. */
    int told = 0;
    for (int round = 0; round < 20; round++) {
        DistTaskId a, b;
        EXPECT_OK(dispatch(nested_w, DIST_WORKER_SUB, 10, 0, &a));
        EXPECT_OK(dispatch(nested_w, DIST_WORKER_SUB, 10, 0, &b));
        DistStatus sa = dist_worker_wait(nested_w, a);
        char ma[512];
        snprintf(ma, sizeof ma, "%s", dist_last_error_message());
        DistStatus sb = dist_worker_wait(nested_w, b);
        int bad_a = sa == DIST_ERR_TASK_FAILED && strstr(ma, "returned error 103") != NULL;
        int bad_b = sb == DIST_ERR_TASK_FAILED && strstr(dist_last_error_message(), "returned error 103") != NULL;
        CHECK(!(bad_a && bad_b), "round %d: both callables of the cycle got DIST_ERR_BAD_STATE", round);
        told += bad_a + bad_b;
        dist_worker_drain(nested_w);
    }
    printf("ok: 20 rounds of two waiting callables: the deadlock told to one of them %d time(s), never to both\n", told);
    EXPECT_OK(dist_worker_shutdown(nested_w));
}

/* ---- concurrent -------------------------------------------------------- */

struct waiter { DistWorker *w; DistTaskId id; int drain; DistStatus got; char msg[256]; double t0, t1; };

static void *wait_in_thread(void *p) {
    struct waiter *x = p;
    x->t0 = now_s();
    x->got = x->drain ? dist_worker_drain(x->w) : dist_worker_wait(x->w, x->id);
    snprintf(x->msg, sizeof x->msg, "%s", dist_last_error_message());
    x->t1 = now_s();
    return NULL;
}

static void *shut_down_in_thread(void *p) {
    return (void *)(intptr_t)dist_worker_shutdown((DistWorker *)p);
}

static void section_concurrent(void) {
    SECTION("concurrent: waits in progress when shutdown starts return first");
    DistWorker *w = make(800);
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, NULL));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, work, NULL));
    EXPECT_OK(dist_worker_start(w));
    struct waiter x[4];
    memset(x, 0, sizeof x);
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 1, 300, &x[0].id));     /* finishes during shutdown */
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 1, 60000, &x[1].id));   /* past the deadline */
    EXPECT_OK(dispatch(w, DIST_WORKER_NEXT_LEVEL, 2, 0, &x[2].id)); /* fails */
    x[3].drain = 1;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        x[i].w = w;
        pthread_create(&t[i], NULL, wait_in_thread, &x[i]);
    }
    nap_ms(50);
    double t0 = now_s();
    DistStatus s = dist_worker_shutdown(w);
    printf("shutdown (%.0f ms): %s: %s\n", (now_s() - t0) * 1e3, dist_status_str(s), dist_last_error_message());
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    const DistStatus want[4] = {DIST_OK, DIST_ERR_TIMEOUT, DIST_ERR_TASK_FAILED, DIST_ERR_TASK_FAILED};
    for (int i = 0; i < 4; i++) {
        printf("   %s (from %+.0f to %+.0f ms): %s %s\n", i == 3 ? "drain" : "wait",
               (x[i].t0 - t0) * 1e3, (x[i].t1 - t0) * 1e3, dist_status_str(x[i].got), x[i].msg);
        CHECK(x[i].got == want[i] || (i == 3 && x[i].got == DIST_ERR_TIMEOUT),
              "waiter %d got %s, expected %s", i, dist_status_str(x[i].got), dist_status_str(want[i]));
    }
    CHECK(s == DIST_ERR_TIMEOUT, "shutdown returned %s", dist_status_str(s));
    printf("ok: three waits and a drain returned their statuses before the worker was freed\n");

    /* Two shutdowns at once, many times: one frees the worker, the other
       returns SHUT_DOWN at once and touches nothing freed. */
    for (int round = 0; round < 20; round++) {
        DistWorker *v = make(800);
        EXPECT_OK(dist_worker_spawn(v, DIST_WORKER_SUB, work, NULL, NULL));
        EXPECT_OK(dist_worker_add_thread(v, DIST_WORKER_NEXT_LEVEL, work, NULL));
        EXPECT_OK(dist_worker_start(v));
        DistTaskId id;
        EXPECT_OK(dispatch(v, DIST_WORKER_SUB, 1, 20, &id));
        pthread_t other;
        pthread_create(&other, NULL, shut_down_in_thread, v);
        DistStatus mine = dist_worker_shutdown(v);
        void *theirs;
        pthread_join(other, &theirs);
        DistStatus th = (DistStatus)(intptr_t)theirs;
        CHECK((mine == DIST_OK && th == DIST_ERR_SHUT_DOWN) || (mine == DIST_ERR_SHUT_DOWN && th == DIST_OK),
              "round %d: two shutdowns returned %s and %s", round, dist_status_str(mine), dist_status_str(th));
    }
    printf("ok: 20 pairs of concurrent shutdowns: one freed the worker, the other returned SHUT_DOWN\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct section sections[] = {
        {"registration", section_registration}, {"failed_start", section_failed_start},
        {"nested", section_nested},             {"concurrent", section_concurrent},
        {"deadline", section_deadline},         {"no_pidfd", section_no_pidfd},
        {"fork_copy", section_fork_copy},       {"lifeline", section_lifeline},
    };
    return run_sections("faults", sections, sizeof sections / sizeof sections[0], argc, argv);
}
