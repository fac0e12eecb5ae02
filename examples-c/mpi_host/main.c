/* mpi_host: a level on each other rank, driven by rank 0 over MPI.
 *
 *   mpirun -np 3 mpi_host            the demo: a DAG across the ranks
 *   mpirun -np 3 mpi_host --bench    remote round trips beside MPI's own
 *   mpirun -np 3 mpi_host --bench --quick
 *
 * Ranks 1..N-1 each host a level (L3) with two SUB workers (a forked child
 * and a pool thread) and serve rank 0's tasks; rank 0 (L4) places work on
 * them with dist_worker_dispatch_on, like on any NEXT_LEVEL worker.
 *
 * --bench measures, between rank 0 and rank 1, MPI's own ping-pong
 * (MPI_Send/MPI_Recv of the same bytes each way, on MPI_COMM_WORLD, before
 * the library's threads run) and a dist-worker round trip of a task with one
 * INOUT tensor of those bytes (dispatch_on + wait: the task and the bytes
 * go out, the bytes come back; the remote orchestration function runs no
 * inner task), both as the median of many round trips, and bytes/s as
 * 2 x size / median.
 */
#define _GNU_SOURCE
#include <dist_worker.h>
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRY(call) do { DistStatus s_ = (call); if (s_ != DIST_OK) { \
    fprintf(stderr, "rank %d: %s: %s: %s\n", rank, #call, dist_status_str(s_), \
            dist_last_error_message()); exit(1); } } while (0)

enum { NOOP = 1, SQUARE = 2, SUB_SQUARE = 10 };

static int32_t rank, size;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

/* A rank's SUB worker: squares floats in place. */
static int32_t sub_fn(void *user, uint64_t callable, const DistTaskView *a,
                      const DistCallConfig *config) {
    (void)user; (void)config;
    if (callable != SUB_SQUARE) return 1;
    float *v = (float *)(uintptr_t)a->tensors[0].data;
    for (uint32_t i = 0; i < a->tensors[0].shapes[0]; i++) v[i] *= v[i];
    return 0;
}

static int32_t setup(void *user, DistWorker *inner) {
    (void)user;
    if (dist_worker_spawn(inner, DIST_WORKER_SUB, sub_fn, NULL, NULL) != DIST_OK) return 1;
    return dist_worker_add_thread(inner, DIST_WORKER_SUB, sub_fn, NULL) == DIST_OK ? 0 : 1;
}

/* Rank 0's tasks on this rank's level. */
static int32_t orch(void *user, DistWorker *inner, uint64_t callable, const DistTaskView *a,
                    const DistCallConfig *config) {
    (void)user;
    if (callable == NOOP) return 0;
    if (callable != SQUARE) return 2;
    DistTensorArgType inout = DIST_ARG_INOUT;
    DistTaskArgs args = { .tensors = a->tensors, .tags = &inout, .tensor_count = 1 };
    DistTask t = { DIST_WORKER_SUB, SUB_SQUARE, *config, &args, 1 };
    return dist_worker_dispatch(inner, &t, NULL) == DIST_OK ? 0 : 3;
}

static DistWorker *driver(size_t heap, uint32_t wait_spin_us) {
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    o.level = 4;
    o.heap_ring_size = heap;
    o.wait_spin_us = wait_spin_us;
    DistWorker *w;
    TRY(dist_worker_create(&o, &w));
    uint32_t n;
    TRY(dist_worker_add_mpi_levels(w, &n));
    TRY(dist_worker_start(w));
    return w;
}

static int demo(void) {
    DistWorker *w = driver(16u << 20, 5);
    enum { N = 1024 };
    uint32_t ranks = (uint32_t)size - 1, per = N / ranks;
    uint32_t shape = N;
    TRY(dist_worker_scope_begin(w));
    DistTensor x;
    TRY(dist_worker_alloc(w, &shape, 1, DIST_FLOAT32, &x));
    float *v = (float *)(uintptr_t)x.data;
    for (uint32_t i = 0; i < N; i++) v[i] = (float)i;
    /* rank r squares its slice of x in place, placed on worker r - 1 */
    for (uint32_t r = 0; r < ranks; r++) {
        uint32_t n = r + 1 == ranks ? N - r * per : per;
        DistTensor slice = { .data = x.data + 4ull * r * per, .shapes = {n}, .ndims = 1,
                             .dtype = DIST_FLOAT32 };
        DistTensorArgType inout = DIST_ARG_INOUT;
        DistTaskArgs a = { &slice, &inout, 1, NULL, 0 };
        DistTask t = { DIST_WORKER_NEXT_LEVEL, SQUARE, { 24, 3, false, false }, &a, 1 };
        TRY(dist_worker_dispatch_on(w, &t, &r, NULL));
    }
    TRY(dist_worker_scope_end(w));
    TRY(dist_worker_drain(w));
    double sum = 0, want = 0;
    for (uint32_t i = 0; i < N; i++) { sum += v[i]; want += (double)i * i; }
    printf("mpi_host: %u ranks squared %u floats in rank 0's memory: sum %.0f (expected %.0f)\n",
           ranks, N, sum, want);
    DistWorkerStats s = { .size = sizeof s };
    TRY(dist_worker_stats(w, &s));
    for (uint32_t i = 0; i < s.worker_count; i++) {
        DistWorkerInfo info = { .size = sizeof info };
        TRY(dist_worker_worker_info(w, i, &info));
        printf("  L3 worker %u (rank %u): %llu tasks\n", i, i + 1, (unsigned long long)info.tasks_run);
    }
    /* a failure names its path: the task, the rank, the inner worker */
    DistTask bad = { DIST_WORKER_NEXT_LEVEL, 99, { 24, 3, false, false }, NULL, 1 };
    DistTaskId id;
    TRY(dist_worker_dispatch(w, &bad, &id));
    DistStatus st = dist_worker_wait(w, id);
    printf("  a failing task: %s: %s\n", dist_status_str(st), dist_last_error_message());
    (void)dist_worker_drain(w);
    TRY(dist_worker_shutdown(w));
    return sum == want && st == DIST_ERR_TASK_FAILED ? 0 : 1;
}

/* MPI's own ping-pong of `bytes` with rank 1: median round trip in us. */
static double mpi_ping_pong(char *buf, size_t bytes, int reps) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = -2; i < reps; i++) {
        double t0 = now_us();
        if (rank == 0) {
            MPI_Send(buf, (int)bytes, MPI_BYTE, 1, 7, MPI_COMM_WORLD);
            MPI_Recv(buf, (int)bytes, MPI_BYTE, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, (int)bytes, MPI_BYTE, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, (int)bytes, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
        }
        if (i >= 0) t[i] = now_us() - t0;
    }
    double m = median(t, reps);
    free(t);
    return m;
}

/* A dist-worker round trip on rank 1: one INOUT tensor of `bytes`. */
static double remote_round_trip(DistWorker *w, char *buf, size_t bytes, int reps) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    DistTensor x = { .data = (uint64_t)(uintptr_t)buf, .shapes = {(uint32_t)bytes},
                     .ndims = bytes ? 1 : 0, .dtype = DIST_UINT8 };
    DistTensorArgType inout = DIST_ARG_INOUT;
    DistTaskArgs a = { &x, &inout, bytes ? 1 : 0, NULL, 0 };
    DistTask task = { DIST_WORKER_NEXT_LEVEL, NOOP, { 24, 3, false, false }, &a, 1 };
    uint32_t on = 0;
    for (int i = -2; i < reps; i++) {
        DistTaskId id;
        double t0 = now_us();
        TRY(dist_worker_dispatch_on(w, &task, &on, &id));
        TRY(dist_worker_wait(w, id));
        if (i >= 0) t[i] = now_us() - t0;
        if ((i & 63) == 63) TRY(dist_worker_drain(w));
    }
    TRY(dist_worker_drain(w));
    double m = median(t, reps);
    free(t);
    return m;
}

static int bench(int quick) {
    struct { size_t bytes; int reps; const char *name; } sizes[] = {
        { 8, quick ? 200 : 2000, "8 B" },
        { 1u << 20, quick ? 30 : 300, "1 MiB" },
        { 64u << 20, quick ? 4 : 30, "64 MiB" },
    };
    enum { SIZES = 3 };
    char *buf = malloc(64u << 20);
    memset(buf, 1, 64u << 20);
    double mpi[SIZES], ours[SIZES];
    if (rank <= 1)
        for (int s = 0; s < SIZES; s++) mpi[s] = mpi_ping_pong(buf, sizes[s].bytes, sizes[s].reps);
    if (rank != 0) {
        free(buf);
        DistWorkerOptions o;
        dist_worker_options_init(&o);
        o.heap_ring_size = 160u << 20;   /* holds a 64 MiB tensor */
        TRY(dist_worker_mpi_serve(&o, setup, orch, NULL));
        return 0;
    }
    /* The waiting thread polls for 2 ms before it sleeps, as MPI's
     * blocking calls poll (the default, 5 us, suits a host whose cores are
     * busy with its own children). */
    DistWorker *w = driver(16u << 20, 2000);
    for (int s = 0; s < SIZES; s++) ours[s] = remote_round_trip(w, buf, sizes[s].bytes, sizes[s].reps);
    TRY(dist_worker_shutdown(w));
    free(buf);
    char host[256] = "?";
    gethostname(host, sizeof host);
    printf("mpi_host --bench%s: rank 0 <-> rank 1 on %s, %d ranks; median round trip\n",
           quick ? " --quick" : "", host, size);
    printf("%-8s %14s %14s %7s %14s %14s %7s\n", "size", "MPI p50 us", "ours p50 us", "ratio",
           "MPI GB/s", "ours GB/s", "ratio");
    for (int s = 0; s < SIZES; s++) {
        double b = 2.0 * (double)sizes[s].bytes;
        printf("%-8s %14.1f %14.1f %6.2fx %14.3f %14.3f %6.2fx\n", sizes[s].name, mpi[s], ours[s],
               ours[s] / mpi[s], b / mpi[s] / 1e3, b / ours[s] / 1e3, mpi[s] / ours[s]);
    }
    printf("(8 B: MPI sends 8 bytes each way; ours is a task with one 8-byte INOUT tensor)\n");
    return 0;
}

int main(int argc, char **argv) {
    TRY(dist_worker_mpi_init(&argc, &argv, &rank, &size));
    int want_bench = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bench") == 0) want_bench = 1;
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
    }
    if (size < 2) {
        fprintf(stderr, "mpi_host: run it with mpirun -np 2 or more\n");
        TRY(dist_worker_mpi_finalize());
        return 1;
    }
    int rc;
    if (want_bench) {
        rc = bench(quick);
    } else if (rank != 0) {
        TRY(dist_worker_mpi_serve(NULL, setup, orch, NULL));
        rc = 0;
    } else {
        rc = demo();
    }
    TRY(dist_worker_mpi_finalize());
    return rc;
}
