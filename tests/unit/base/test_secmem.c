/*
 * Secure memory and process hardening: secret pages are marked do-not-dump, and
 * veil_harden_process turns core dumps off for the whole process (checked in forked children,
 * so this test program keeps its own settings), or leaves them alone when dumps are allowed.
 */
#include "harness.h"
#include "veil/base.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs fn in a forked child and returns its wait status. */
static int in_child(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    int st = -1;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return st;
}

/* True when the mapping that holds p is marked "dd" (MADV_DONTDUMP) in /proc/self/smaps. */
static bool mapping_is_dontdump(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false, dd = false;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        char *dash = strchr(line, '-');
        if (dash != NULL && strchr(line, ':') > dash && strchr(line, ' ') > dash) {
            char *end = NULL;
            lo = strtoul(line, &end, 16);
            hi = end == dash ? strtoul(dash + 1, &end, 16) : 0;
            in = end != NULL && *end == ' ' && (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            dd = strstr(line, " dd") != NULL;
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    return dd;
}

TEST(secure_memory_is_excluded_from_core_dumps)
{
    void *p = NULL;
    ASSERT_OK(veil_secure_alloc(100, &p));
    memset(p, 0x5a, 100);
    bool dd = mapping_is_dontdump(p);
    veil_secure_free(p, 100);
    ASSERT_TRUE(dd);
}

static int harden_and_report(void *arg)
{
    (void)arg;
    struct veil_errbuf eb = {{0}};
    if (veil_harden_process(false, &eb) != VEIL_OK) {
        fprintf(stderr, "  harden: %s\n", eb.msg);
        return 1;
    }
    struct rlimit rl;
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        return 2;
    if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
        return 3;
    return 0;
}

TEST(harden_turns_core_dumps_off)
{
    int st = in_child(harden_and_report, NULL);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ_I64(WEXITSTATUS(st), 0);
    /* The parent is untouched. */
    ASSERT_EQ_I64(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
}

static int allow_and_report(void *arg)
{
    (void)arg;
    struct rlimit before, after;
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (getrlimit(RLIMIT_CORE, &before) != 0 || veil_harden_process(true, NULL) != VEIL_OK ||
        getrlimit(RLIMIT_CORE, &after) != 0)
        return 1;
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable || dumpable != 1)
        return 2;
    if (after.rlim_cur != before.rlim_cur || after.rlim_max != before.rlim_max)
        return 3;
    return 0;
}

TEST(allowed_core_dumps_stay_allowed)
{
    int st = in_child(allow_and_report, NULL);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ_I64(WEXITSTATUS(st), 0);
}

static int harden_and_abort(void *arg)
{
    if (chdir(arg) != 0)
        return 1;
    /* Raise the soft limit as far as allowed, so only the hardening can stop a core file. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_CORE, &rl);
    }
    if (veil_harden_process(false, NULL) != VEIL_OK)
        return 2;
    signal(SIGABRT, SIG_DFL);
    abort();
}

TEST(hardened_process_that_aborts_leaves_no_core)
{
    char dir[] = "/tmp/veil-core-test-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    int st = in_child(harden_and_abort, dir);
    /* Whatever core_pattern says (a file here, or a pipe to a collector), the kernel reports
     * in the wait status whether it dumped a core; a non-dumpable process gets none. */
    size_t files = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        files++;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
    ASSERT_TRUE(WIFSIGNALED(st));
    ASSERT_EQ_I64(WTERMSIG(st), SIGABRT);
    ASSERT_FALSE(WCOREDUMP(st));
    ASSERT_EQ_U64(files, 0);
}

RUN_TESTS()
