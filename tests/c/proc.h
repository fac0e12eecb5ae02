/* Process helpers shared by the C tests that look at threads and time.
 * Include after defining _GNU_SOURCE and after check.h. */
#ifndef DIST_WORKER_TEST_PROC_H
#define DIST_WORKER_TEST_PROC_H

#include <dirent.h>
#include <errno.h>
#include <time.h>

/* Threads of this process, from /proc/self/task. */
static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir /proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Sleeps `ms` milliseconds, resuming after signals. */
static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#endif /* DIST_WORKER_TEST_PROC_H */
