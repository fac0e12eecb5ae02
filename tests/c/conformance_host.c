/* conformance_host: the library's parent side speaks the mailbox wire format byte for byte
 * to a child written in another language from docs/protocol.md alone.
 *
 *     conformance_host PYTHON3 CHILD_SCRIPT
 *
 * CHILD_SCRIPT takes `--mailbox PATH --log LOG [--fail C:CODE]` and appends
 * one JSON line per task (tests/conformance/mailbox_child.py, or another
 * implementation's child given as DIST_WORKER_REFERENCE_CHILD). Two children
 * (one per worker type) are forked and exec'd before any library thread
 * exists, each on its own 4096-byte /dev/shm file, registered with
 * dist_worker_add_process. The host dispatches a varied set
 * of tasks (every dtype, ndims 1..5, scalars 0 and UINT64_MAX, no args, full
 * 4032-byte blobs, extreme config values), waits each, and checks:
 * callable 13 fails with TASK_FAILED and code 42 in the message; shutdown
 * makes each child exit 0; each child's log holds exactly the dispatched
 * tasks of its type, in order, with callable, config and decoded args equal
 * to what was dispatched, and no wire error (a rule of docs/protocol.md broken:
 * a reserved or padding byte not zero, a child-owned word changed...). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* ------------------------------------------------------------------ */
/* A tiny JSON reader: objects, arrays, strings, integers, true/false/null. */

enum { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ };

typedef struct JVal {
    int kind;
    int neg;        /* J_INT: negative */
    uint64_t mag;   /* J_INT: magnitude; J_BOOL: 0/1 */
    char *str;      /* J_STR */
    int n;          /* J_ARR / J_OBJ: entries */
    struct JVal *items;
    char **keys;    /* J_OBJ */
} JVal;

static const char *g_jerr;

static void jskip(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++;
}

static int jparse(const char **p, JVal *out);

static char *jstring(const char **p) {
    if (**p != '"') { g_jerr = "expected a string"; return NULL; }
    (*p)++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    while (**p && **p != '"') {
        char c = *(*p)++;
        if (c == '\\') {
            c = *(*p)++;
            if (c == 'u') { /* keep it simple: the logs hold ASCII only */
                for (int i = 0; i < 4 && **p; i++) (*p)++;
                c = '?';
            } else if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
        }
        if (len + 2 > cap) s = realloc(s, cap *= 2);
        s[len++] = c;
    }
    if (**p != '"') { free(s); g_jerr = "unterminated string"; return NULL; }
    (*p)++;
    s[len] = '\0';
    return s;
}

static int jparse(const char **p, JVal *out) {
    memset(out, 0, sizeof *out);
    jskip(p);
    if (**p == '{' || **p == '[') {
        int obj = **p == '{';
        char close = obj ? '}' : ']';
        out->kind = obj ? J_OBJ : J_ARR;
        (*p)++;
        jskip(p);
        if (**p == close) { (*p)++; return 1; }
        for (;;) {
            out->items = realloc(out->items, (size_t)(out->n + 1) * sizeof(JVal));
            if (obj) {
                out->keys = realloc(out->keys, (size_t)(out->n + 1) * sizeof(char *));
                jskip(p);
                if (!(out->keys[out->n] = jstring(p))) return 0;
                jskip(p);
                if (**p != ':') { g_jerr = "expected ':'"; return 0; }
                (*p)++;
            }
            if (!jparse(p, &out->items[out->n])) return 0;
            out->n++;
            jskip(p);
            if (**p == ',') { (*p)++; continue; }
            if (**p == close) { (*p)++; return 1; }
            g_jerr = "expected ',' or a closing bracket";
            return 0;
        }
    }
    if (**p == '"') {
        out->kind = J_STR;
        return (out->str = jstring(p)) != NULL;
    }
    if (strncmp(*p, "true", 4) == 0) { out->kind = J_BOOL; out->mag = 1; *p += 4; return 1; }
    if (strncmp(*p, "false", 5) == 0) { out->kind = J_BOOL; *p += 5; return 1; }
    if (strncmp(*p, "null", 4) == 0) { out->kind = J_NULL; *p += 4; return 1; }
    if (**p == '-' || (**p >= '0' && **p <= '9')) {
        out->kind = J_INT;
        if (**p == '-') { out->neg = 1; (*p)++; }
        if (**p < '0' || **p > '9') { g_jerr = "bad number"; return 0; }
        errno = 0;
        char *end;
        out->mag = strtoull(*p, &end, 10);
        if (errno) { g_jerr = "number out of range"; return 0; }
        *p = end;
        if (**p == '.' || **p == 'e' || **p == 'E') { g_jerr = "non-integer number"; return 0; }
        return 1;
    }
    g_jerr = "unexpected character";
    return 0;
}

static void jfree(JVal *v) {
    for (int i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

static const JVal *jget(const JVal *obj, const char *key) {
    if (obj->kind != J_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

static int j_is_u64(const JVal *v, uint64_t want) { return v && v->kind == J_INT && !v->neg && v->mag == want; }
static int j_is_i64(const JVal *v, int64_t want) {
    if (!v || v->kind != J_INT) return 0;
    if (want < 0) return v->neg && v->mag == (uint64_t)(-(want + 1)) + 1;
    return (!v->neg || v->mag == 0) && v->mag == (uint64_t)want;
}

/* ------------------------------------------------------------------ */
/* What the host dispatched. */

#define MAX_TASKS 128
#define MAX_T 100
#define MAX_S 503
#define FAIL_CALLABLE 13
#define FAIL_CODE 42

typedef struct {
    DistWorkerType type;
    uint64_t callable;
    DistCallConfig config;
    int no_args; /* dispatched with args NULL */
    uint32_t nt, ns;
    DistTensor t[MAX_T];
    DistTensorArgType tags[MAX_T];
    int use_tags;
    uint64_t s[MAX_S];
    DistTaskId id;
} Expected;

static Expected g_tasks[MAX_TASKS];
static int g_ntasks;

static char g_shm[2][128], g_log[2][128];
static pid_t g_child[2];
static int g_reaped[2];

static void cleanup(void) {
    for (int i = 0; i < 2; i++) {
        if (g_child[i] > 0 && !g_reaped[i]) {
            kill(g_child[i], SIGKILL);
            waitpid(g_child[i], NULL, 0);
        }
        if (g_shm[i][0]) unlink(g_shm[i]);
        if (g_log[i][0]) unlink(g_log[i]);
    }
}

/* A hung child (for example one that never started) would block a wait
 * forever: give up well before the test's timeout, leaving nothing behind. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: no progress for 45 s (did a child fail to start or stop answering?)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    for (int i = 0; i < 2; i++) {
        if (g_child[i] > 0) kill(g_child[i], SIGKILL);
        if (g_shm[i][0]) unlink(g_shm[i]);
        if (g_log[i][0]) unlink(g_log[i]);
    }
    _exit(1);
}

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static Expected *new_task(DistWorkerType ty, uint64_t callable) {
    CHECK(g_ntasks < MAX_TASKS, "too many tasks");
    Expected *e = &g_tasks[g_ntasks++];
    memset(e, 0, sizeof *e);
    e->type = ty;
    e->callable = callable;
    e->config.block_dim = 24;
    e->config.aicpu_thread_num = 3;
    return e;
}

static DistTensor mk_tensor(uint64_t data, uint32_t ndims, uint8_t dtype) {
    DistTensor t;
    memset(&t, 0xA5, sizeof t); /* garbage in padding and unused dims must not reach the wire */
    t.data = data;
    t.ndims = ndims;
    t.dtype = dtype;
    for (uint32_t d = 0; d < ndims; d++) t.shapes[d] = (uint32_t)(rnd() % 5000) + 1;
    return t;
}

static void build_tasks(void) {
    Expected *e;
    e = new_task(DIST_WORKER_SUB, 1);               /* no args at all */
    e->no_args = 1;
    e = new_task(DIST_WORKER_NEXT_LEVEL, 0x1000);    /* args given, but empty */
    e = new_task(DIST_WORKER_NEXT_LEVEL, 0xDEADBEEFCAFEF00Dull); /* every dtype, ndims 1..5 */
    e->config = (DistCallConfig){1, 0, true, false};
    for (uint8_t d = 0; d <= DIST_UINT64; d++) e->t[e->nt++] = mk_tensor(0x7f0000001000ull + d * 64, 1 + d % 5, d);
    e->s[e->ns++] = 0;
    e->s[e->ns++] = UINT64_MAX;
    e->s[e->ns++] = 0x8000000000000000ull;
    e->s[e->ns++] = 1;
    e = new_task(DIST_WORKER_SUB, 2);                /* extreme config values */
    e->config = (DistCallConfig){INT32_MAX, INT32_MIN, false, true};
    e->t[e->nt++] = mk_tensor(0, 5, DIST_FLOAT16);
    e->t[e->nt++] = mk_tensor(UINT64_MAX, 1, DIST_INT8);
    e->use_tags = 1;
    e->tags[0] = DIST_ARG_NO_DEP;
    e->tags[1] = DIST_ARG_NO_DEP;
    e = new_task(DIST_WORKER_SUB, FAIL_CALLABLE);   /* fails with 42 */
    e->s[e->ns++] = 13;
    e = new_task(DIST_WORKER_NEXT_LEVEL, 0xFFFFFFFFFFFFFFFFull); /* full blob: 100 tensors + 3 scalars */
    e->config = (DistCallConfig){-1, 1000, true, true};
    for (uint32_t k = 0; k < 100; k++) e->t[e->nt++] = mk_tensor(0x100000 + k * 0x40, 1 + k % 5, (uint8_t)(k % 9));
    e->s[e->ns++] = UINT64_MAX;
    e->s[e->ns++] = 0;
    e->s[e->ns++] = 0x0123456789ABCDEFull;
    e = new_task(DIST_WORKER_SUB, 3);                /* full blob: 503 scalars */
    for (uint32_t j = 0; j < 503; j++) e->s[e->ns++] = j % 7 == 0 ? UINT64_MAX : rnd();
    e = new_task(DIST_WORKER_NEXT_LEVEL, FAIL_CALLABLE); /* a NEXT_LEVEL handle that fails too */
    e = new_task(DIST_WORKER_NEXT_LEVEL, 0);         /* handle 0 */
    e->t[e->nt++] = mk_tensor(0x2000, 3, DIST_BFLOAT16);
    for (int i = 0; i < 60; i++) {                   /* a varied tail */
        DistWorkerType ty = rnd() % 2 ? DIST_WORKER_SUB : DIST_WORKER_NEXT_LEVEL;
        e = new_task(ty, ty == DIST_WORKER_SUB ? 4 + rnd() % 60 : rnd() | 0x100);
        if (e->callable == FAIL_CALLABLE) e->callable = 14;
        e->config = (DistCallConfig){(int32_t)(rnd() % 100), (int32_t)(rnd() % 9), rnd() % 2 == 0, rnd() % 2 == 0};
        e->nt = (uint32_t)(rnd() % 8);
        for (uint32_t k = 0; k < e->nt; k++) e->t[k] = mk_tensor(rnd(), 1 + (uint32_t)(rnd() % 5), (uint8_t)(rnd() % 9));
        e->ns = (uint32_t)(rnd() % 6);
        for (uint32_t j = 0; j < e->ns; j++) e->s[j] = rnd() % 3 == 0 ? (rnd() % 2 ? 0 : UINT64_MAX) : rnd();
    }
}

static void dispatch_all(DistWorker *w) {
    for (int i = 0; i < g_ntasks; i++) {
        Expected *e = &g_tasks[i];
        DistTaskArgs a = {e->nt ? e->t : NULL, e->use_tags ? e->tags : NULL, e->nt, e->ns ? e->s : NULL, e->ns};
        DistTask t;
        memset(&t, 0, sizeof t);
        t.worker_type = e->type;
        t.callable = e->callable;
        t.config = e->config;
        t.args = e->no_args ? NULL : &a;
        t.group_size = e->no_args ? 0 : 1;
        DistStatus st = dist_worker_dispatch(w, &t, &e->id);
        CHECK(st == DIST_OK, "dispatch of task %d returned %s", i, dist_status_str(st));
    }
    printf("ok: dispatched %d tasks\n", g_ntasks);
}

static void wait_all(DistWorker *w) {
    int failures = 0;
    for (int i = 0; i < g_ntasks; i++) {
        Expected *e = &g_tasks[i];
        DistStatus st = dist_worker_wait(w, e->id);
        if (e->callable == FAIL_CALLABLE) {
            CHECK(st == DIST_ERR_TASK_FAILED, "task %d (callable 13) returned %s, expected TASK_FAILED", i, dist_status_str(st));
            const char *m = dist_last_error_message();
            CHECK(strstr(m, "42") != NULL, "failure message lacks the code 42: \"%s\"", m);
            CHECK(strstr(m, "13") || strstr(m, "0xd"), "failure message lacks the callable 13: \"%s\"", m);
            printf("ok: callable 13 on %s -> TASK_FAILED: %s\n", e->type ? "SUB" : "NEXT_LEVEL", m);
            failures++;
        } else {
            CHECK(st == DIST_OK, "task %d (callable %#" PRIx64 ") returned %s", i, e->callable, dist_status_str(st));
        }
    }
    CHECK(failures == 2, "expected 2 failing tasks");
    printf("ok: every other task returned DIST_OK\n");
}

/* Compares one log record with what was dispatched. */
static void check_record(const JVal *r, const Expected *e, int line, pid_t child) {
    const char *tn = e->type ? "SUB" : "NEXT_LEVEL";
    CHECK(r->kind == J_OBJ, "%s log line %d is not an object", tn, line);
    CHECK(jget(r, "decode_error") == NULL && jget(r, "wire_errors") == NULL,
          "%s log line %d: the child reported a wire error", tn, line);
    CHECK(j_is_u64(jget(r, "callable"), e->callable), "%s log line %d: callable differs (want %#" PRIx64 ")", tn, line, e->callable);
    const JVal *pid = jget(r, "pid");
    CHECK(j_is_i64(pid, child), "%s log line %d: pid is not the child's %d", tn, line, (int)child);
    const JVal *c = jget(r, "config");
    CHECK(c && c->kind == J_ARR && c->n == 4, "%s log line %d: config is not a list of 4", tn, line);
    CHECK(j_is_i64(&c->items[0], e->config.block_dim), "%s log line %d: block_dim differs (want %d)", tn, line, e->config.block_dim);
    CHECK(j_is_i64(&c->items[1], e->config.aicpu_thread_num), "%s log line %d: aicpu_thread_num differs (want %d)", tn, line, e->config.aicpu_thread_num);
    CHECK(j_is_i64(&c->items[2], e->config.enable_profiling), "%s log line %d: enable_profiling differs", tn, line);
    CHECK(j_is_i64(&c->items[3], e->config.enable_dump_tensor), "%s log line %d: enable_dump_tensor differs", tn, line);
    const JVal *ts = jget(r, "tensors");
    CHECK(ts && ts->kind == J_ARR && ts->n == (int)e->nt, "%s log line %d: %d tensors, want %u", tn, line, ts ? ts->n : -1, e->nt);
    for (uint32_t k = 0; k < e->nt; k++) {
        const JVal *t = &ts->items[k];
        const DistTensor *w = &e->t[k];
        CHECK(j_is_u64(jget(t, "data"), w->data), "%s log line %d tensor %u: data differs", tn, line, k);
        CHECK(j_is_u64(jget(t, "ndims"), w->ndims), "%s log line %d tensor %u: ndims differs", tn, line, k);
        CHECK(j_is_u64(jget(t, "dtype"), w->dtype), "%s log line %d tensor %u: dtype differs", tn, line, k);
        const JVal *sh = jget(t, "shapes");
        CHECK(sh && sh->kind == J_ARR && sh->n == (int)w->ndims, "%s log line %d tensor %u: shapes is not ndims long", tn, line, k);
        for (uint32_t d = 0; d < w->ndims; d++)
            CHECK(j_is_u64(&sh->items[d], w->shapes[d]), "%s log line %d tensor %u: shapes[%u] differs", tn, line, k, d);
    }
    const JVal *ss = jget(r, "scalars");
    CHECK(ss && ss->kind == J_ARR && ss->n == (int)e->ns, "%s log line %d: %d scalars, want %u", tn, line, ss ? ss->n : -1, e->ns);
    for (uint32_t j = 0; j < e->ns; j++)
        CHECK(j_is_u64(&ss->items[j], e->s[j]), "%s log line %d: scalar %u differs (want %" PRIu64 ")", tn, line, j, e->s[j]);
}

static void check_log(int ty) {
    FILE *f = fopen(g_log[ty], "r");
    CHECK(f != NULL, "cannot open log %s: %s", g_log[ty], strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int next = 0, lines = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '\n') continue;
        while (next < g_ntasks && g_tasks[next].type != ty) next++;
        CHECK(next < g_ntasks, "%s log has more lines than tasks dispatched", ty ? "SUB" : "NEXT_LEVEL");
        JVal v;
        const char *p = line;
        g_jerr = NULL;
        CHECK(jparse(&p, &v), "%s log line %d: JSON error: %s: %s", ty ? "SUB" : "NEXT_LEVEL", lines + 1, g_jerr, line);
        check_record(&v, &g_tasks[next], lines + 1, g_child[ty]);
        jfree(&v);
        next++;
        lines++;
    }
    free(line);
    fclose(f);
    while (next < g_ntasks && g_tasks[next].type != ty) next++;
    CHECK(next == g_ntasks, "%s log ends after %d lines: task %d is missing", ty ? "SUB" : "NEXT_LEVEL", lines, next);
    printf("ok: %s log: %d records equal the dispatched tasks, in order\n", ty ? "SUB" : "NEXT_LEVEL", lines);
}

static pid_t start_child(const char *python, const char *script, int ty) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed host */
        execl(python, python, script, "--mailbox", g_shm[ty], "--log", g_log[ty], "--fail", "13:42", (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(argc == 3, "usage: %s PYTHON3 CHILD_SCRIPT", argv[0]);
    const char *python = argv[1], *script = argv[2];
    CHECK(access(script, R_OK) == 0, "child script %s: %s", script, strerror(errno));
    printf("child: %s %s\n", python, script);
    atexit(cleanup);
    signal(SIGALRM, on_alarm);
    alarm(45);

    void *mb[2];
    for (int ty = 0; ty < 2; ty++) {
        snprintf(g_shm[ty], sizeof g_shm[ty], "/dev/shm/dist_conformance_%d_%d_mailbox", (int)getpid(), ty);
        snprintf(g_log[ty], sizeof g_log[ty], "/tmp/dist_conformance_%d_%d.log", (int)getpid(), ty);
        int fd = open(g_shm[ty], O_RDWR | O_CREAT | O_EXCL, 0600);
        CHECK(fd >= 0, "create %s: %s", g_shm[ty], strerror(errno));
        CHECK(ftruncate(fd, DIST_MAILBOX_SIZE) == 0, "ftruncate: %s", strerror(errno));
        mb[ty] = mmap(NULL, DIST_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(mb[ty] != MAP_FAILED, "mmap %s: %s", g_shm[ty], strerror(errno));
        close(fd);
        fd = open(g_log[ty], O_WRONLY | O_CREAT | O_EXCL, 0600);
        CHECK(fd >= 0, "create %s: %s", g_log[ty], strerror(errno));
        close(fd);
    }
    /* Forked before the library has any thread; the children may take a while
     * to start, which the protocol tolerates: the mailbox is IDLE until then. */
    for (int ty = 0; ty < 2; ty++) g_child[ty] = start_child(python, script, ty);
    printf("ok: started NEXT_LEVEL child %d and SUB child %d\n", (int)g_child[0], (int)g_child[1]);

    DistWorker *w = NULL;
    EXPECT_OK(dist_worker_create(NULL, &w));
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_NEXT_LEVEL, mb[0]));
    EXPECT_OK(dist_worker_add_process(w, DIST_WORKER_SUB, mb[1]));

    build_tasks();
    dispatch_all(w);
    wait_all(w);
    EXPECT_ERR(dist_worker_drain(w), DIST_ERR_TASK_FAILED);
    EXPECT_OK(dist_worker_drain(w));
    EXPECT_OK(dist_worker_shutdown(w));
    printf("ok: shutdown returned DIST_OK\n");

    for (int ty = 0; ty < 2; ty++) {
        int status = 0;
        CHECK(waitpid(g_child[ty], &status, 0) == g_child[ty], "waitpid: %s", strerror(errno));
        g_reaped[ty] = 1;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: exit %d / signal %d, expected exit 0",
              (int)g_child[ty], WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        printf("ok: child %d exited 0 on SHUTDOWN\n", (int)g_child[ty]);
        munmap(mb[ty], DIST_MAILBOX_SIZE);
    }
    check_log(DIST_WORKER_NEXT_LEVEL);
    check_log(DIST_WORKER_SUB);
    printf("conformance_host: all checks passed\n");
    return 0; /* cleanup() removes the mailbox files and logs */
}
