/* observe: the figures, log lines and trace of a DistWorker through the C
 * API (`observe <section>` runs one; no argument runs them all).
 *
 * stats       After a known workload (failures and a child killed
 *             mid-task), the per-type counts add up, each worker's figures
 *             are its own (the dead one retired), latencies are ordered.
 * versioning  `size` below the first version is INVALID_ARGUMENT and
 *             nothing is written; a larger struct (a caller built against a
 *             newer header) gets this version's prefix and `size` says how
 *             much; NULLs and indices out of range are refused.
 * log         The log callback receives a child's death (with its pid and
 *             how it died) and the shutdown; NULL restores stderr.
 * trace       A trace is written on flush as a JSON trace with a slice per
 *             task and the dependency between them. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* callable 1: sleep scalar[0] ms; 2: fail with 9; 3: kill this process. */
static int32_t work(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)c;
    switch (callable) {
    case 1: nap_ms(a->scalar_count > 0 ? (long)a->scalars[0] : 1); return 0;
    case 2: return 9;
    case 3: raise(SIGKILL); return 0;
    default: return 0;
    }
}

static DistStatus dispatch(DistWorker *w, DistWorkerType type, uint64_t callable, uint64_t ms,
                           const uint32_t *on, DistTaskId *id) {
    DistTaskArgs a = {NULL, NULL, 0, &ms, 1};
    DistTask t = {type, callable, {24, 3, false, false}, &a, 1};
    return on ? dist_worker_dispatch_on(w, &t, on, id) : dist_worker_dispatch(w, &t, id);
}

static DistWorkerStats stats_of(DistWorker *w) {
    DistWorkerStats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    EXPECT_OK(dist_worker_stats(w, &s));
    CHECK(s.size == sizeof s, "size %u written back, expected %zu", s.size, sizeof s);
    return s;
}

static DistWorkerInfo info_of(DistWorker *w, uint32_t index) {
    DistWorkerInfo i;
    memset(&i, 0, sizeof i);
    i.size = sizeof i;
    EXPECT_OK(dist_worker_worker_info(w, index, &i));
    return i;
}

/* Waits up to 10 s for worker `index` to retire. */
static void await_retired(DistWorker *w, uint32_t index) {
    for (int i = 0; i < 10000 && info_of(w, index).state != DIST_WORKER_STATE_RETIRED; i++) nap_ms(1);
    CHECK(info_of(w, index).state == DIST_WORKER_STATE_RETIRED, "worker %u never retired", index);
}

static void section_stats(void) {
    SECTION("stats");
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    int32_t pid0 = 0, pid1 = 0;
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, &pid0));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, &pid1));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_NEXT_LEVEL, work, NULL));
    DistWorkerStats before = stats_of(w);
    CHECK(before.worker_count == 0 && before.types[DIST_WORKER_SUB].submitted == 0,
          "nothing before start");

    for (int i = 0; i < 30; i++) EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 0, 0, NULL, NULL));
    for (int i = 0; i < 4; i++) EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 2, 0, NULL, NULL));
    for (int i = 0; i < 5; i++) EXPECT_OK(dispatch(w, DIST_WORKER_NEXT_LEVEL, 1, 2, NULL, NULL));
    const uint32_t first = 0;
    DistTaskId killed;
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 3, 0, &first, &killed));
    EXPECT_ERR(dist_worker_wait(w, killed), DIST_ERR_CHILD_DIED);
    CHECK(dist_worker_drain(w) != DIST_OK, "the drain reports the first failure");

    DistWorkerStats s = stats_of(w);
    for (int t = 0; t < 2; t++) {
        DistTypeStats *ty = &s.types[t];
        CHECK(ty->submitted == ty->pending + ty->ready + ty->running + ty->completed + ty->failed,
              "type %d: the counts add up", t);
        CHECK(ty->pending == 0 && ty->ready == 0 && ty->running == 0, "type %d at rest", t);
    }
    DistTypeStats *sub = &s.types[DIST_WORKER_SUB], *next = &s.types[DIST_WORKER_NEXT_LEVEL];
    CHECK(sub->submitted == 35 && sub->completed == 30 && sub->failed == 5,
          "SUB: %llu submitted, %llu completed, %llu failed", (unsigned long long)sub->submitted,
          (unsigned long long)sub->completed, (unsigned long long)sub->failed);
    CHECK(next->submitted == 5 && next->completed == 5 && next->failed == 0, "NEXT_LEVEL counts");
    CHECK(sub->live_workers == 1 && next->live_workers == 1, "the killed child left its pool");
    CHECK(s.worker_count == 3 && s.level == 3, "3 workers at level 3");
    CHECK(s.latency_count == 40, "every task ran: %llu", (unsigned long long)s.latency_count);
    CHECK(s.latency_p50_ns <= s.latency_p99_ns && s.latency_p99_ns <= s.latency_p999_ns &&
              s.latency_p999_ns <= s.latency_max_ns,
          "percentiles ordered: %llu %llu %llu %llu", (unsigned long long)s.latency_p50_ns,
          (unsigned long long)s.latency_p99_ns, (unsigned long long)s.latency_p999_ns,
          (unsigned long long)s.latency_max_ns);
    CHECK(s.latency_p99_ns >= 2000000, "the five 2 ms tasks are the top 12 %%");
    CHECK(s.latency_max_ns < 30000000000ull, "plausible");
    CHECK(s.heap_capacity_bytes == 64u << 20 && s.heap_live_bytes == 0 && s.slots == 0,
          "engine at rest");
    printf("ok: p50 %llu ns, p99 %llu ns, p99.9 %llu ns\n", (unsigned long long)s.latency_p50_ns,
           (unsigned long long)s.latency_p99_ns, (unsigned long long)s.latency_p999_ns);

    DistWorkerInfo i0 = info_of(w, 0), i1 = info_of(w, 1), i2 = info_of(w, 2);
    CHECK(i0.mode == DIST_WORKER_MODE_SPAWNED && i0.pid == pid0 && i0.state == DIST_WORKER_STATE_RETIRED &&
              i0.tasks_failed >= 1,
          "worker 0: the killed child, retired");
    CHECK(i1.mode == DIST_WORKER_MODE_SPAWNED && i1.pid == pid1 && i1.state == DIST_WORKER_STATE_IDLE &&
              i1.rank == 1 && i1.worker_type == DIST_WORKER_SUB,
          "worker 1: SUB worker 1, idle");
    CHECK(i2.mode == DIST_WORKER_MODE_THREAD && i2.pid == 0 && i2.worker_type == DIST_WORKER_NEXT_LEVEL &&
              i2.rank == 0 && i2.index == 2,
          "worker 2: a pool thread");
    CHECK(i0.tasks_run + i1.tasks_run == 35 && i2.tasks_run == 5, "each worker's own runs");
    CHECK(i2.busy_ns >= 10000000, "five 2 ms tasks: %llu ns busy", (unsigned long long)i2.busy_ns);
    EXPECT_OK(dist_worker_shutdown(w));
}

static void section_versioning(void) {
    SECTION("versioning");
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL));
    CHECK(sizeof(DistWorkerStats) == DIST_WORKER_STATS_V1_SIZE, "this is the first version");
    CHECK(sizeof(DistWorkerInfo) == DIST_WORKER_INFO_V1_SIZE, "this is the first version");

    /* Before start: no worker yet. */
    DistWorkerInfo info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    EXPECT_ERR(dist_worker_worker_info(w, 0, &info), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dispatch(w, DIST_WORKER_SUB, 0, 0, NULL, NULL));
    EXPECT_OK(dist_worker_drain(w));

    /* Smaller than the first version: refused, nothing written. */
    unsigned char raw[sizeof(DistWorkerStats)], copy[sizeof raw];
    memset(raw, 0xab, sizeof raw);
    DistWorkerStats *small = (DistWorkerStats *)raw;
    small->size = DIST_WORKER_STATS_V1_SIZE - 8;
    memcpy(copy, raw, sizeof raw);
    EXPECT_ERR(dist_worker_stats(w, small), DIST_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(raw, copy, sizeof raw) == 0, "nothing written");
    small->size = 0;
    EXPECT_ERR(dist_worker_stats(w, small), DIST_ERR_INVALID_ARGUMENT);

    /* A caller built against a newer header: a longer struct. This
     * version's fields are its prefix; the rest is left alone and `size`
     * says how much was filled. */
    struct {
        DistWorkerStats s;
        unsigned char future[64];
    } big;
    memset(&big, 0xcd, sizeof big);
    big.s.size = sizeof big;
    EXPECT_OK(dist_worker_stats(w, &big.s));
    CHECK(big.s.size == sizeof(DistWorkerStats), "filled %u bytes", big.s.size);
    CHECK(big.s.types[DIST_WORKER_SUB].completed == 1 && big.s.worker_count == 1, "the prefix is filled");
    for (size_t i = 0; i < sizeof big.future; i++) CHECK(big.future[i] == 0xcd, "byte %zu past the prefix untouched", i);

    struct {
        DistWorkerInfo i;
        unsigned char future[16];
    } wide;
    memset(&wide, 0xcd, sizeof wide);
    wide.i.size = sizeof wide;
    EXPECT_OK(dist_worker_worker_info(w, 0, &wide.i));
    CHECK(wide.i.size == sizeof(DistWorkerInfo) && wide.i.tasks_run == 1, "info prefix filled");
    for (size_t i = 0; i < sizeof wide.future; i++) CHECK(wide.future[i] == 0xcd, "info byte %zu untouched", i);
    memset(&info, 0xab, sizeof info);
    info.size = DIST_WORKER_INFO_V1_SIZE - 1;
    EXPECT_ERR(dist_worker_worker_info(w, 0, &info), DIST_ERR_INVALID_ARGUMENT);

    /* Bad input. */
    DistWorkerStats s;
    s.size = sizeof s;
    EXPECT_ERR(dist_worker_stats(NULL, &s), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_stats(w, NULL), DIST_ERR_NULL_ARGUMENT);
    info.size = sizeof info;
    EXPECT_ERR(dist_worker_worker_info(w, 1, &info), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_worker_info(w, UINT32_MAX, &info), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_worker_info(w, 0, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_worker_info(NULL, 0, &info), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_set_log_level(5), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_set_log_level(-1), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_shutdown(w));
}

static pthread_mutex_t lines_lock = PTHREAD_MUTEX_INITIALIZER;
static char lines[16384];
static size_t lines_len;
static int warn_lines;

static void collect(void *user, DistLogLevel level, const char *message) {
    CHECK(user == (void *)lines, "the user pointer comes back");
    pthread_mutex_lock(&lines_lock);
    size_t n = strlen(message);
    if (lines_len + n + 2 < sizeof lines) {
        memcpy(lines + lines_len, message, n);
        lines_len += n;
        lines[lines_len++] = '\n';
        lines[lines_len] = '\0';
    }
    if (level == DIST_LOG_WARN) warn_lines++;
    pthread_mutex_unlock(&lines_lock);
}

static void section_log(void) {
    SECTION("log");
    EXPECT_OK(dist_worker_set_log_level(DIST_LOG_INFO));
    EXPECT_OK(dist_worker_set_log_callback(collect, lines));
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    int32_t pid = 0;
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, work, NULL, &pid));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL));
    EXPECT_OK(dist_worker_start(w));
    CHECK(kill(pid, SIGKILL) == 0, "kill the child");
    await_retired(w, 0);
    EXPECT_OK(dist_worker_shutdown(w));
    EXPECT_OK(dist_worker_set_log_callback(NULL, NULL));
    EXPECT_OK(dist_worker_set_log_level(DIST_LOG_WARN));
    printf("%s", lines);

    char want[128];
    snprintf(want, sizeof want, "dist-worker[%d] L3 info: spawned SUB worker 0 (child pid %d)", (int)getpid(), pid);
    CHECK(strstr(lines, want) != NULL, "the spawn is logged: %s", want);
    snprintf(want, sizeof want, "L3 warn: SUB worker 0 (child pid %d) killed by signal 9; it leaves the pool", pid);
    CHECK(strstr(lines, want) != NULL, "the death is logged with its pid and how: %s", want);
    CHECK(warn_lines >= 1, "at warn level");
    CHECK(strstr(lines, "info: started with 2 SUB and 0 NEXT_LEVEL workers") != NULL, "the start is logged");
    CHECK(strstr(lines, "info: shut down in ") != NULL, "the shutdown is logged");
}

static void section_trace(void) {
    SECTION("trace");
    char path[64]; /* its own file, should sections run side by side */
    snprintf(path, sizeof path, "observe_trace.%d.json", (int)getpid());
    remove(path);
    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_thread(w, DIST_WORKER_SUB, work, NULL));
    EXPECT_ERR(dist_worker_trace_start(w, NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_trace_start(w, ""), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dist_worker_trace_flush(w), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_trace_stop(w), DIST_ERR_BAD_STATE);
    EXPECT_ERR(dist_worker_trace_flush(NULL), DIST_ERR_NULL_ARGUMENT);
    EXPECT_OK(dist_worker_trace_start(w, path));

    DistTensor t = {.data = 0x100, .shapes = {1}, .ndims = 1, .dtype = DIST_FLOAT32};
    DistTensorArgType out = DIST_ARG_OUTPUT, in = DIST_ARG_INPUT;
    DistTaskArgs a = {&t, &out, 1, NULL, 0};
    DistTask produce = {DIST_WORKER_SUB, 0, {24, 3, false, false}, &a, 1};
    EXPECT_OK(dist_worker_dispatch(w, &produce, NULL));
    a.tags = &in;
    DistTask consume = {DIST_WORKER_SUB, 0, {24, 3, false, false}, &a, 1};
    EXPECT_OK(dist_worker_dispatch(w, &consume, NULL));
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_OK(dist_worker_trace_flush(w));
    CHECK(stats_of(w).trace_events > 0 && stats_of(w).trace_dropped == 0, "events recorded");

    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "the trace file exists");
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    CHECK(strncmp(text, "{\"traceEvents\":[", 16) == 0, "a JSON trace");
    CHECK(strstr(text, "\"displayTimeUnit\":\"ns\"") != NULL, "in ns");
    const char *p = text;
    int slices = 0;
    while ((p = strstr(p, "\"ph\":\"X\"")) != NULL) { slices++; p++; }
    CHECK(slices == 2, "one slice per task: %d", slices);
    CHECK(strstr(text, "\"ph\":\"s\"") && strstr(text, "\"ph\":\"f\""), "the dependency's arrow");
    CHECK(strstr(text, "\"name\":\"SUB worker 0 (thread)\""), "the worker's track");
    EXPECT_OK(dist_worker_trace_stop(w));
    EXPECT_OK(dist_worker_shutdown(w));
    remove(path);
}

int main(int argc, char **argv) {
    static const struct section sections[] = {
        {"stats", section_stats}, {"versioning", section_versioning},
        {"log", section_log},     {"trace", section_trace},
    };
    return run_sections("observe", sections, sizeof sections / sizeof sections[0], argc, argv);
}
