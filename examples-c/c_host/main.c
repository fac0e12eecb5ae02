/* c_host: a host process driving one level of dist-worker from C.
 *
 * Two SUB workers run on pool threads of this process; two NEXT_LEVEL
 * workers run in child processes forked by dist_worker_spawn. Each task
 * gets an input tensor, an output tensor and two scalars (its index and a
 * factor); the callable checks them and writes in[i] * factor to out[i].
 *
 * Children write into memory the parent reads, so the arrays live in one
 * MAP_SHARED mapping made before the fork: parent and children see the same
 * bytes at the same address. */
#include <dist_worker.h>

#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#define TASKS 1000
#define FACTOR 3
#define WORKERS 4
#define SCALE_ID 1                 /* SUB: a small callable id */
#define SCALE_HANDLE 0x5ca1e0000ULL /* NEXT_LEVEL: an opaque handle */

struct shared {
    uint64_t in[TASKS];
    uint64_t out[TASKS];
    int32_t ran_on[TASKS]; /* index into `workers` of who ran task i */
};

static struct shared *shm;

/* Passed to each worker as `user`: who it is, for the report. */
struct worker_info {
    int32_t index;
    const char *name;
};
static const struct worker_info workers[WORKERS] = {
    {0, "sub thread 0"}, {1, "sub thread 1"}, {2, "next-level child 0"}, {3, "next-level child 1"},
};

/* The callable. Returns 0 on success, a non-zero error code otherwise. */
static int32_t scale(void *user, uint64_t callable, const DistTaskView *args,
                     const DistCallConfig *config)
{
    const struct worker_info *me = user;
    (void)config;
    if (callable != SCALE_ID && callable != SCALE_HANDLE) return 1;
    if (args->tensor_count != 2 || args->scalar_count != 2) return 2;
    const DistTensor *in = &args->tensors[0], *out = &args->tensors[1];
    uint64_t i = args->scalars[0], factor = args->scalars[1];
    if (i >= TASKS || in->ndims != 1 || in->shapes[0] != 1 || in->dtype != DIST_UINT64 ||
        out->dtype != DIST_UINT64 || in->data != (uint64_t)(uintptr_t)&shm->in[i])
        return 3;
    *(uint64_t *)(uintptr_t)out->data = *(const uint64_t *)(uintptr_t)in->data * factor;
    shm->ran_on[i] = me->index;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Prints a failed call and tells main to give up. */
static int failed(const char *what, DistStatus s)
{
    fprintf(stderr, "%s: %s (%s)\n", what, dist_status_str(s), dist_last_error_message());
    return 1;
}

int main(void)
{
    DistWorker *w = NULL;
    DistStatus s;

    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < TASKS; i++) { shm->in[i] = (uint64_t)i + 1; shm->ran_on[i] = -1; }

    if ((s = dist_worker_create(NULL, &w)) != DIST_OK) return failed("create", s);

    /* Register every worker before the pool starts: forking is safe only
       while the library has no thread. Flush so children inherit no output. */
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        int32_t pid = 0;
        if ((s = dist_worker_add_thread(w, DIST_WORKER_SUB, scale, (void *)&workers[k])) != DIST_OK)
            return failed("add_thread", s);
        if ((s = dist_worker_spawn(w, DIST_WORKER_NEXT_LEVEL, scale, (void *)&workers[2 + k], &pid)) != DIST_OK)
            return failed("spawn", s);
        printf("spawned %s as pid %d\n", workers[2 + k].name, pid);
    }
    if ((s = dist_worker_start(w)) != DIST_OK) return failed("start", s);

    /* Dispatch: even tasks to the SUB pool, odd ones to the NEXT_LEVEL pool.
       dispatch copies tensors, tags and scalars, so locals are fine. */
    static DistTaskId ids[TASKS];
    double t0 = now_s();
    for (int i = 0; i < TASKS; i++) {
        DistTensor t[2] = {
            {(uint64_t)(uintptr_t)&shm->in[i], {1}, 1, DIST_UINT64},
            {(uint64_t)(uintptr_t)&shm->out[i], {1}, 1, DIST_UINT64},
        };
        DistTensorArgType tags[2] = {DIST_ARG_INPUT, DIST_ARG_OUTPUT_EXISTING};
        uint64_t scalars[2] = {(uint64_t)i, FACTOR};
        DistTaskArgs args = {t, tags, 2, scalars, 2};
        int sub = i % 2 == 0;
        DistTask task = {sub ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL,
                         sub ? SCALE_ID : SCALE_HANDLE,
                         {24, 3, false, false}, &args, 1};
        if ((s = dist_worker_dispatch(w, &task, &ids[i])) != DIST_OK) return failed("dispatch", s);
    }

    /* Every task's own status, then drain: the first failure since the last drain. */
    int errors = 0;
    for (int i = 0; i < TASKS; i++)
        if ((s = dist_worker_wait(w, ids[i])) != DIST_OK) errors += failed("task", s);
    if ((s = dist_worker_drain(w)) != DIST_OK) errors += failed("drain", s);
    double elapsed = now_s() - t0;

    /* Check the results and count who ran what. */
    int per_worker[WORKERS] = {0};
    for (int i = 0; i < TASKS; i++) {
        int on = shm->ran_on[i];
        int want_sub = i % 2 == 0;
        if (shm->out[i] != shm->in[i] * FACTOR || on < 0 || on >= WORKERS || (on < 2) != want_sub) {
            fprintf(stderr, "task %d: out=%" PRIu64 " ran_on=%d\n", i, shm->out[i], on);
            errors++;
            continue;
        }
        per_worker[on]++;
    }
    for (int k = 0; k < WORKERS; k++) printf("%-20s ran %4d tasks\n", workers[k].name, per_worker[k]);
    printf("%d tasks in %.3f s: %.0f tasks/s\n", TASKS, elapsed, TASKS / elapsed);

    /* Shutdown reaps the children and frees w. */
    if ((s = dist_worker_shutdown(w)) != DIST_OK) errors += failed("shutdown", s);
    munmap(shm, sizeof *shm);
    printf("%s\n", errors ? "FAILED" : "ok");
    return errors ? 1 : 0;
}
