/* A checker that runs inside a container and reports what the kernel lets it do.
 *
 * Built static by tests/integration/hardening_support.py and copied into the rootfs.
 * Every verb prints "name=value" lines; an errno is 0 when the call succeeded.
 * No verb changes anything outside the container even when the call it tries is
 * allowed: files opened for writing are closed unwritten, the hostname is set to the
 * value it already has, a module image is garbage the kernel rejects before loading.
 *
 *   probe attacks HOSTPID     every "must fail" call of a default container
 *   probe ids                 uid/euid/gid/egid (run setuid-root to test no_new_privs)
 *   probe syscalls            the seccomp-decided calls only (for exec)
 *   probe race OUT SECS DEV:INO...
 *                             watch /proc for new pids and open /proc/N/exe (O_PATH and
 *                             O_WRONLY), as the CVE-2019-5736 exploit did; counts in OUT
 *   probe fds                 every open fd and where it points
 *   probe swap A B SECS       (on the host) renameat2(RENAME_EXCHANGE) A and B in a loop
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int err(long r) { return r < 0 ? errno : 0; }

static void report(const char *name, int e) { printf("%s=%d\n", name, e); }

static int open_close(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd); /* never written */
    return 0;
}

/* unshare in a child, so that the probe itself stays in its namespaces. */
static int in_child_unshare(int flags) {
    int status;
    pid_t pid = fork();
    if (pid == 0) _exit(unshare(flags) == 0 ? 0 : errno);
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static void seccomp_decided(void) {
    /* keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) */
    report("keyctl", err(syscall(SYS_keyctl, 0, -3, 0)));
    report("unshare_user", in_child_unshare(CLONE_NEWUSER));
    report("mount", err(mount("none", "/tmp", "tmpfs", 0, NULL)));
    report("umount", err(umount2("/berth-probe-not-a-mount", 0)));
    /* personality(READ_IMPLIES_EXEC) */
    report("personality_rie", err(syscall(SYS_personality, 0x0400000)));
}

static int verb_attacks(const char *hostpid) {
    static const char module[] = "\x7f" "ELF not a module";
    struct utsname u;
    pid_t host = (pid_t)atoi(hostpid);

    seccomp_decided();
    report("init_module", err(syscall(SYS_init_module, module, sizeof module, "")));
    int fd = open("/bin/busybox", O_RDONLY | O_CLOEXEC);
    report("finit_module", err(syscall(SYS_finit_module, fd, "", 0)));
    if (fd >= 0) close(fd);
    report("delete_module", err(syscall(SYS_delete_module, "berth_probe_none", O_NONBLOCK)));
    report("sysrq_trigger", open_close("/proc/sysrq-trigger", O_WRONLY));
    report("sys_kernel_create", open_close("/sys/kernel/berth-probe", O_WRONLY | O_CREAT));
    report("sys_power_state", open_close("/sys/power/state", O_WRONLY));
    report("sys_uevent_helper", open_close("/sys/kernel/uevent_helper", O_WRONLY));
    report("proc_sys_write", open_close("/proc/sys/kernel/hostname", O_WRONLY));
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    report("raw_socket", s < 0 ? errno : 0);
    if (s >= 0) close(s);
    s = socket(AF_PACKET, SOCK_RAW, 0);
    report("packet_socket", s < 0 ? errno : 0);
    if (s >= 0) close(s);
    report("ptrace_host", err(ptrace(PTRACE_ATTACH, host, 0, 0)));
    report("kill_host", err(kill(host, 0)));
    if (uname(&u) == 0) /* the name it already has: harmless even if allowed */
        report("sethostname", err(sethostname(u.nodename, strlen(u.nodename))));
    report("mknod_disk", err(mknod("/dev/probe-sda", S_IFBLK | 0600, makedev(8, 0))));
    unlink("/dev/probe-sda");
    return 0;
}

static int verb_ids(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    printf("uid=%d\neuid=%d\ngid=%d\negid=%d\n", getuid(), geteuid(), getgid(), getegid());
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "CapEff:", 7)) printf("capeff=%s", line + 8);
        if (!strncmp(line, "NoNewPrivs:", 11)) printf("nnp=%s", line + 12);
    }
    if (f) fclose(f);
    return 0;
}

static int verb_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int self = d ? dirfd(d) : -1;
    if (!d) return 1;
    while ((e = readdir(d))) {
        char link[PATH_MAX + 32], target[PATH_MAX];
        if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        printf("fd%s=%s\n", e->d_name, target);
    }
    closedir(d);
    return 0;
}

struct ident { dev_t dev; ino_t ino; };

static int matches(const struct stat *st, const struct ident *ids, int n) {
    for (int i = 0; i < n; i++)
        if (st->st_dev == ids[i].dev && st->st_ino == ids[i].ino) return 1;
    return 0;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The CVE-2019-5736 attack, minus the write: grab the runtime's exe while it is in the
 * container's pid namespace. A hit is any open of /proc/N/exe that yields one of the
 * given host files (the runtime's interpreter or binary); reopening it for writing
 * through /proc/self/fd is attempted (and closed unwritten) to show what it would allow. */
static int verb_race(const char *out, double secs, int n, char **specs) {
    struct ident ids[16];
    struct stat own, st;
    long seen = 0, denied = 0, container_exe = 0, hits = 0, reopened_wr = 0, direct_wr = 0;
    long hits_on_rw_mount = 0;
    char seen_pid[65536] = {0};
    int nids = 0;
    for (int i = 0; i < n && nids < 16; i++) {
        unsigned long long dev, ino;
        if (sscanf(specs[i], "%llu:%llu", &dev, &ino) == 2) {
            ids[nids].dev = (dev_t)dev;
            ids[nids].ino = (ino_t)ino;
            nids++;
        }
    }
    stat("/bin/busybox", &own);
    double end = now() + secs;
    while (now() < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        if (!d) return 1;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            char path[64];
            if (pid <= 1 || pid == getpid() || pid >= 65536) continue;
            if (!seen_pid[pid]) { seen_pid[pid] = 1; seen++; }
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_PATH | O_CLOEXEC);
            if (fd < 0) {
                if (errno == EACCES || errno == EPERM) denied++;
                continue;
            }
            if (fstat(fd, &st) == 0) {
                if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) container_exe++;
                if (matches(&st, ids, nids)) {
                    char again[64];
                    struct statvfs vfs;
                    hits++;
                    /* a grabbed exe on a writable mount could be written once ETXTBSY ends */
                    if (fstatvfs(fd, &vfs) == 0 && !(vfs.f_flag & ST_RDONLY)) hits_on_rw_mount++;
                    snprintf(again, sizeof again, "/proc/self/fd/%d", fd);
                    if (open_close(again, O_WRONLY) == 0) reopened_wr++;
                }
            }
            close(fd);
            fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                if (fstat(fd, &st) == 0 && matches(&st, ids, nids)) direct_wr++;
                close(fd);
            }
        }
        closedir(d);
    }
    FILE *f = fopen(out, "w");
    if (!f) return 1;
    fprintf(f, "seen=%ld\ndenied=%ld\ncontainer_exe=%ld\nhits=%ld\nreopened_wr=%ld\n"
            "direct_wr=%ld\nhits_on_rw_mount=%ld\n", seen, denied, container_exe, hits,
            reopened_wr, direct_wr, hits_on_rw_mount);
    fclose(f);
    return 0;
}

static int verb_swap(const char *a, const char *b, double secs) {
    long swaps = 0;
    double end = now() + secs;
    while (now() < end) {
        if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0) swaps++;
    }
    printf("swaps=%ld\n", swaps);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "attacks")) return verb_attacks(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "ids")) return verb_ids();
    if (argc >= 2 && !strcmp(argv[1], "syscalls")) { seccomp_decided(); return 0; }
    if (argc >= 2 && !strcmp(argv[1], "fds")) return verb_fds();
    if (argc >= 4 && !strcmp(argv[1], "race"))
        return verb_race(argv[2], atof(argv[3]), argc - 4, argv + 4);
    if (argc >= 5 && !strcmp(argv[1], "swap")) return verb_swap(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: probe attacks HOSTPID | ids | syscalls | fds | race OUT SECS DEV:INO...\n"
                    "       probe swap A B SECS\n");
    return 2;
}
