/* additions: the small C additions of 0.2, through the installed library.
 *
 * dist_worker_wait_timeout (0 = only look; TIMEOUT leaves the task alone),
 * dist_call_config_init (the documented defaults; NULL is a no-op),
 * dist_worker_version (the loaded library matches this header), and
 * DistWorkerOptions.start_timeout_ms (start waits that long for children to
 * be ready, no longer shutdown_timeout_ms). */
#define _GNU_SOURCE
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Sleeps scalars[0] ms. */
static int32_t nap(void *user, uint64_t callable, const DistTaskView *a, const DistCallConfig *c) {
    (void)user; (void)callable; (void)c;
    if (a->scalar_count > 0) usleep((useconds_t)(a->scalars[0] * 1000));
    return 0;
}

static int32_t slow_init(void *user) {
    (void)user;
    sleep(5);
    return 0;
}

static void wait_timeout(void) {
    SECTION("dist_worker_wait_timeout");
    DistWorker *w;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_spawn(w, DIST_WORKER_SUB, nap, NULL, NULL));
    uint64_t ms = 300;
    DistTaskArgs args = {NULL, NULL, 0, &ms, 1};
    DistTask t = {DIST_WORKER_SUB, 1, {0, 0, false, false}, &args, 1};
    dist_call_config_init(&t.config);
    DistTaskId id;
    EXPECT_OK(dist_worker_dispatch(w, &t, &id));
    double t0 = now_ms();
    EXPECT_ERR(dist_worker_wait_timeout(w, id, 0), DIST_ERR_TIMEOUT);
    CHECK(now_ms() - t0 < 100, "a 0 ms wait took %.1f ms", now_ms() - t0);
    t0 = now_ms();
    EXPECT_ERR(dist_worker_wait_timeout(w, id, 50), DIST_ERR_TIMEOUT);
    double took = now_ms() - t0;
    CHECK(took >= 49 && took < 250, "a 50 ms wait took %.1f ms", took);
    EXPECT_OK(dist_worker_wait_timeout(w, id, 10000)); /* the task ran on */
    EXPECT_OK(dist_worker_wait_timeout(w, id, 0));     /* and stays known */
    EXPECT_OK(dist_worker_wait(w, id));
    EXPECT_ERR(dist_worker_wait_timeout(NULL, id, 0), DIST_ERR_NULL_ARGUMENT);
    EXPECT_ERR(dist_worker_wait_timeout(w, 12345, 0), DIST_ERR_INVALID_ARGUMENT);
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_ERR(dist_worker_wait_timeout(w, id, 0), DIST_ERR_INVALID_ARGUMENT); /* released */
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: wait_timeout looks, times out, and waits again\n");
}

static void config_and_version(void) {
    SECTION("dist_call_config_init, dist_worker_version");
    DistCallConfig c;
    memset(&c, 0x5a, sizeof c);
    dist_call_config_init(&c);
    CHECK(c.block_dim == 24 && c.aicpu_thread_num == 3 && !c.enable_profiling && !c.enable_dump_tensor,
          "defaults: %d %d %d %d", c.block_dim, c.aicpu_thread_num, c.enable_profiling, c.enable_dump_tensor);
    dist_call_config_init(NULL);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", DIST_WORKER_VERSION_MAJOR, DIST_WORKER_VERSION_MINOR,
             DIST_WORKER_VERSION_PATCH);
    const char *v = dist_worker_version();
    CHECK(v != NULL && strcmp(v, want) == 0, "library %s, header %s", v ? v : "(null)", want);
    CHECK(dist_worker_version() == v, "a static string");
    printf("ok: config defaults; library version %s matches the header\n", v);
}

static void start_timeout(void) {
    SECTION("start_timeout_ms");
    DistWorkerOptions o;
    dist_worker_options_init(&o);
    CHECK(o.start_timeout_ms == 30000, "default start_timeout_ms %u", o.start_timeout_ms);
    o.start_timeout_ms = 200;
    o.shutdown_timeout_ms = 60000; /* no longer governs start */
    DistWorker *w;
    EXPECT_OK(dist_worker_create(&o, &w));
    int32_t pid;
    EXPECT_OK(dist_worker_spawn_with_init(w, DIST_WORKER_SUB, slow_init, nap, NULL, &pid));
    double t0 = now_ms();
    EXPECT_ERR(dist_worker_start(w), DIST_ERR_TIMEOUT);
    double took = now_ms() - t0;
    CHECK(took >= 190 && took < 2000, "start gave up after %.1f ms", took);
    CHECK(strstr(dist_last_error_message(), "start_timeout_ms") != NULL, "names the option");
    EXPECT_ERR(dist_worker_start(w), DIST_ERR_SHUT_DOWN);
    dist_worker_shutdown(w);
    printf("ok: start gave up after %.0f ms (start_timeout_ms 200, shutdown_timeout_ms 60000)\n", took);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    config_and_version();
    wait_timeout();
    start_timeout();
    printf("additions: all checks passed\n");
    return 0;
}
