/* Tiny checking helpers shared by the C test programs.
 *
 * Every check prints what it verified; the first failure prints the file,
 * line, the expectation, the library's last error message and exits 1. */
#ifndef DIST_WORKER_TEST_CHECK_H
#define DIST_WORKER_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_worker.h"

#define CHECK_FAIL_(...)                                                      \
    do {                                                                      \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                         \
        fprintf(stderr, "\n  last error message: \"%s\"\n",                   \
                dist_last_error_message());                                   \
        fflush(stderr);                                                       \
        exit(1);                                                              \
    } while (0)

/* CHECK(cond, fmt, ...): a plain condition. */
#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) CHECK_FAIL_(__VA_ARGS__);                                \
    } while (0)

/* EXPECT_OK(call): the call returns DIST_OK. */
#define EXPECT_OK(call)                                                       \
    do {                                                                      \
        DistStatus st_ = (call);                                              \
        if (st_ != DIST_OK)                                                   \
            CHECK_FAIL_("%s returned %s (%d), expected DIST_OK", #call,       \
                        dist_status_str(st_), (int)st_);                      \
    } while (0)

/* EXPECT_ERR(call, want): the call returns `want` (not DIST_OK) and leaves a
 * non-empty message on this thread. */
#define EXPECT_ERR(call, want)                                                \
    do {                                                                      \
        DistStatus st_ = (call);                                              \
        if (st_ != (want))                                                    \
            CHECK_FAIL_("%s returned %s (%d), expected %s (%d)", #call,       \
                        dist_status_str(st_), (int)st_,                       \
                        dist_status_str(want), (int)(want));                  \
        const char *msg_ = dist_last_error_message();                         \
        if (msg_ == NULL || msg_[0] == '\0')                                  \
            CHECK_FAIL_("%s returned %s but left an empty error message",     \
                        #call, dist_status_str(st_));                         \
        printf("ok: %-60s -> %s: %s\n", #call, dist_status_str(st_), msg_);   \
    } while (0)

/* Heading for a group of checks. */
#define SECTION(name) printf("== %s\n", (name))

/* A program of named sections: `prog NAME` runs one, `prog` runs them all. */
struct section {
    const char *name;
    void (*run)(void);
};

static inline int run_sections(const char *prog, const struct section *sections, size_t n,
                               int argc, char **argv) {
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], sections[i].name) != 0) continue;
        sections[i].run();
        ran++;
    }
    CHECK(ran > 0, "no section named %s", argc > 1 ? argv[1] : "");
    printf("%s: %d section(s) passed\n", prog, ran);
    return 0;
}

#endif /* DIST_WORKER_TEST_CHECK_H */
