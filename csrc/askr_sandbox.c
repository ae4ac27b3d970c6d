/*
 * askr_sandbox.c: Landlock and seccomp for the PHP processes ([sandbox], docs/internals.md "The
 * sandbox policy"). PHP-free: raw syscalls and the kernel's uapi headers, no library.
 *
 * Where it is applied, and why there:
 *  - In the zygote, after php.ini is parsed and every extension started, before any PHP code
 *    runs: askr_main.c calls sandbox_apply_zygote() from zend_post_startup_cb, which PHP calls
 *    before OPcache's own post-startup, where opcache.preload runs the app's preload script. So
 *    preloaded app code is sandboxed too, and every worker forked later inherits the filter
 *    and the first Landlock layer (no PHP code ever runs outside them).
 *  - In each worker, right after fork: a second, nested Landlock layer with the same rules,
 *    except that /proc shrinks from all of it (the zygote's layer must cover the /proc/<pid> of
 *    every worker it will fork) to the worker's own /proc/self. Each worker is then its own
 *    Landlock domain: it cannot ptrace, read /proc/<pid>/mem of, or signal (ABI 6 scope) its
 *    siblings or the zygote.
 *  - --sandbox-exec (queue workers, the scheduler): one layer, then execve of the PHP CLI.
 *
 * Landlock denials are invisible to us: the kernel returns EACCES (PHP logs its usual "failed to
 * open stream: Permission denied" warning) and, with ABI 7 and audit enabled, logs an audit
 * record (type LANDLOCK_ACCESS/LANDLOCK_DOMAIN); nothing reaches this process. Denied syscalls are
 * ours to see: the filter traps them (SECCOMP_RET_TRAP), and the SIGSYS handler below makes the
 * call return -EPERM, counts it in the worker's scoreboard slot and logs it once per syscall.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>

#include "askr_chan.h"
#include "askr_sandbox.h"

/* ------------------------------------------------------------------ */
/* Landlock's uapi past what Debian 12's linux-libc-dev (6.1, ABI 2)   */
/* declares: our own copies, so one build uses the best ABI a kernel   */
/* offers. Values from the kernel's include/uapi/linux/landlock.h.     */
/* ------------------------------------------------------------------ */

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#define LL_ACCESS_FS_TRUNCATE      (1ULL << 14)  /* ABI 3 */
#define LL_ACCESS_FS_IOCTL_DEV     (1ULL << 15)  /* ABI 5 */
#define LL_ACCESS_NET_BIND_TCP     (1ULL << 0)   /* ABI 4 */
#define LL_ACCESS_NET_CONNECT_TCP  (1ULL << 1)   /* ABI 4 */
#define LL_RULE_NET_PORT 2
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL            (1ULL << 1)   /* ABI 6 */
#define LL_RESTRICT_SELF_LOG_NEW_EXEC_ON (1U << 1) /* ABI 7 */

/* struct landlock_ruleset_attr as of ABI 6; older kernels accept the larger struct as long as
 * the fields they do not know are zero. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};
struct ll_net_port_attr {
	uint64_t allowed_access;
	uint64_t port;
};

#define LL_FS_ABI1 ((LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1)   /* EXECUTE .. MAKE_SYM */
#define LL_FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
/* rw: everything but EXECUTE (what PHP can write it must never run) and device nodes. */
#define LL_FS_WRITE (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR \
	| LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG \
	| LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SYM \
	| LANDLOCK_ACCESS_FS_REFER | LL_ACCESS_FS_TRUNCATE | LL_ACCESS_FS_IOCTL_DEV)
/* The rights a rule on a file (not a directory) may carry. */
#define LL_FS_FILE (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE \
	| LANDLOCK_ACCESS_FS_READ_FILE | LL_ACCESS_FS_TRUNCATE | LL_ACCESS_FS_IOCTL_DEV)

static long ll_create(const struct ll_ruleset_attr *attr, size_t size, uint32_t flags)
{
	return syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

/* ------------------------------------------------------------------ */
/* The policy                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
	sandbox_access access;
	char *path;
} path_rule;

static struct {
	path_rule *rules;
	size_t nrules, cap;
	uint16_t ports[64];        /* connect tcp:PORT; none = the network is not restricted */
	size_t nports;
	bool required, allow_exec, debug;
} P;

sandbox_state g_sandbox;

void sandbox_add_path(sandbox_access access, const char *path)
{
	if (!path || path[0] != '/') {
		return;                       /* relative PHP values ("." in include_path): cwd is covered */
	}
	if (P.nrules == P.cap) {
		size_t cap = P.cap ? P.cap * 2 : 64;
		path_rule *r = realloc(P.rules, cap * sizeof(*r));
		if (!r) {
			return;
		}
		P.rules = r;
		P.cap = cap;
	}
	char *copy = strdup(path);
	if (copy) {
		P.rules[P.nrules++] = (path_rule){ access, copy };
	}
}

static bool flag_value(const char *v, bool *out)
{
	if (!strcmp(v, "0") || !strcmp(v, "1")) {
		*out = v[0] == '1';
		return true;
	}
	return false;
}

/* A path line: only absolute paths (sandbox_add_path() ignores the rest). */
static bool policy_path(sandbox_access access, const char *arg)
{
	sandbox_add_path(access, arg);
	return arg[0] == '/';
}

/* One line of the policy; false on anything unknown (the master and this must agree). */
static bool policy_line(char *line)
{
	char *sp = strchr(line, ' ');
	if (!sp) {
		return false;
	}
	*sp = '\0';
	const char *word = line, *arg = sp + 1;
	if (!strcmp(word, "ro")) return policy_path(SANDBOX_RO, arg);
	if (!strcmp(word, "rw")) return policy_path(SANDBOX_RW, arg);
	if (!strcmp(word, "exec")) return policy_path(SANDBOX_EXEC, arg);
	if (!strcmp(word, "required")) return flag_value(arg, &P.required);
	if (!strcmp(word, "allow_exec")) return flag_value(arg, &P.allow_exec);
	if (!strcmp(word, "debug")) return flag_value(arg, &P.debug);
	if (strcmp(word, "connect") || strncmp(arg, "tcp:", 4)) {
		return false;
	}
	char *end;
	unsigned long port = strtoul(arg + 4, &end, 10);
	if (*end || port == 0 || port > 65535 || P.nports == sizeof(P.ports) / sizeof(P.ports[0])) {
		return false;
	}
	P.ports[P.nports++] = (uint16_t)port;
	return true;
}

bool sandbox_policy_read(int fd, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (!grow(&buf, &cap, len + 4096)) {
			snprintf(err, errlen, "out of memory");
			close(fd);
			return false;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			snprintf(err, errlen, "cannot read the sandbox policy: %s", strerror(errno));
			close(fd);
			free(buf);
			return false;
		}
		if (n == 0) {
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	P.allow_exec = true;
	int number = 0;
	for (char *save, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		number++;
		if (line[0] == '#' || !line[0]) {
			continue;
		}
		char copy[256];
		snprintf(copy, sizeof(copy), "%s", line);
		if (!policy_line(line)) {
			snprintf(err, errlen, "bad sandbox policy line %d: %s", number, copy);
			free(buf);
			return false;
		}
	}
	free(buf);
	return true;
}

/* ------------------------------------------------------------------ */
/* What the kernel offers                                              */
/* ------------------------------------------------------------------ */

/* The Landlock ABI this kernel offers (0: none, errno says why). */
static int sandbox_landlock_abi(void)
{
	long abi = ll_create(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return abi < 0 ? 0 : (int)abi;
}

#if defined(__x86_64__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_X86_64
#define SANDBOX_ARCH_NAME "x86_64"
#define X32_SYSCALL_BIT 0x40000000u
#endif

/* Whether seccomp filters can trap here. */
static bool sandbox_seccomp_available(void)
{
#ifdef SANDBOX_AUDIT_ARCH
	uint32_t action = SECCOMP_RET_TRAP;
	return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0
		&& syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
#else
	return false;                 /* the filter below is written for x86_64 only */
#endif
}

void sandbox_probe_print(void)
{
	int abi = sandbox_landlock_abi();
	const char *why = "";
	if (!abi) {
		why = errno == EOPNOTSUPP ? "disabled at boot (lsm= without landlock)" : strerror(errno);
	}
#ifdef SANDBOX_ARCH_NAME
	const char *arch = SANDBOX_ARCH_NAME;
#else
	const char *arch = "unsupported";
#endif
	printf("{\"landlock_abi\": %d, \"landlock_error\": \"%s\", \"seccomp\": %s, \"arch\": \"%s\"}\n", abi, why,
		sandbox_seccomp_available() ? "true" : "false", arch);
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Landlock                                                            */
/* ------------------------------------------------------------------ */

static uint64_t fs_rights_for_abi(int abi)
{
	uint64_t fs = LL_FS_ABI1;
	if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;       /* before: renames across directories are refused (EXDEV) */
	if (abi >= 3) fs |= LL_ACCESS_FS_TRUNCATE;          /* before: truncate() is not restricted */
	if (abi >= 5) fs |= LL_ACCESS_FS_IOCTL_DEV;         /* before: ioctl on devices is not restricted */
	return fs;
}

static void debug_log(const char *fmt, const char *path, const char *why)
{
	if (P.debug) {
		askr_log("DEBUG", fmt, path, why);
	}
}

/* A directory PHP may write in, as named and as it resolves: a rule beneath it names a path PHP
 * could have replaced, since the last generation, with a symlink to anywhere. */
typedef struct {
	const char *given;
	char real[PATH_MAX];
} writable_dir;

/* The path an O_PATH descriptor really holds (symlinks resolved). */
static bool fd_real_path(int fd, char *out, size_t len)
{
	char link[32];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, len - 1);
	if (n <= 0 || (size_t)n >= len - 1) {
		return false;
	}
	out[n] = '\0';
	return true;
}

static bool path_beneath(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	while (n && dir[n - 1] == '/') {
		n--;                          /* "/" itself: every path is beneath it */
	}
	return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

/* False when `path`, beneath a PHP-writable directory, resolves (through a symlink PHP may have
 * planted there: "storage/cache" -> "/") to somewhere outside it. Such a rule would hand PHP
 * what it pointed the link at, at the next reload; it is skipped, with a WARNING. */
static bool stays_inside_writable(const char *path, int fd, const writable_dir *w, size_t nw)
{
	char real[PATH_MAX];
	bool known = fd_real_path(fd, real, sizeof(real));
	for (size_t i = 0; i < nw; i++) {
		if ((path_beneath(path, w[i].given) || path_beneath(path, w[i].real))
				&& (!known || !path_beneath(real, w[i].real))) {
			askr_log("WARNING", "sandbox: no rule for %s: it lies in %s, which PHP may write, and leads "
				"out of it (to %s): a symlink PHP could have made", path, w[i].given, known ? real : "?");
			return false;
		}
	}
	return true;
}

/* One path rule into the ruleset; a missing path is skipped, and so is one a PHP-writable
 * directory could have redirected (see stays_inside_writable). */
static int add_path_rule(int ruleset, const char *path, sandbox_access access, uint64_t handled,
	const writable_dir *w, size_t nw)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		debug_log("sandbox: %s skipped: %s", path, strerror(errno));
		return 0;
	}
	if (!stays_inside_writable(path, fd, w, nw)) {
		close(fd);
		return 0;
	}
	struct stat st;
	uint64_t rights = LL_FS_READ;
	if (access == SANDBOX_RW || access == SANDBOX_RW_STARTUP) rights |= LL_FS_WRITE;
	if (access == SANDBOX_EXEC) rights |= LANDLOCK_ACCESS_FS_EXECUTE;
	if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) {
		rights &= LL_FS_FILE;
	}
	struct landlock_path_beneath_attr attr = { .allowed_access = rights & handled, .parent_fd = fd };
	int rc = 0;
	if (attr.allowed_access && syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &attr, 0) < 0) {
		rc = errno;
		askr_log("WARNING", "sandbox: cannot add a rule for %s: %s", path, strerror(errno));
	}
	close(fd);
	return rc == EINVAL ? 0 : rc;    /* EINVAL: rights this kind of file cannot carry; skipped */
}

/* The dynamic loader this program runs on (PT_INTERP), which execve() must be allowed to map
 * when EXECUTE is restricted: the PHP CLI needs the same one. */
static int interp_cb(struct dl_phdr_info *info, size_t size, void *out)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type == PT_INTERP) {
			*(const char **)out = (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
		}
	}
	return 1;                         /* the first object is the program itself */
}

static const char *dynamic_loader(void)
{
	const char *interp = NULL;
	dl_iterate_phdr(interp_cb, &interp);
	return interp;
}

typedef enum { PROC_ALL, PROC_SELF } proc_scope;

/* Build and enforce one Landlock layer from the policy. 0, or an errno. `exec_also`: paths that
 * get read+execute besides the policy's (the launcher's program and loader). */
static int landlock_layer(int abi, proc_scope proc, const char *const *exec_also, uint32_t restrict_flags)
{
	struct ll_ruleset_attr attr = { .handled_access_fs = fs_rights_for_abi(abi) };
	if (abi >= 4 && P.nports) {
		attr.handled_access_net = LL_ACCESS_NET_BIND_TCP | LL_ACCESS_NET_CONNECT_TCP;
	}
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
	}
	int ruleset = (int)ll_create(&attr, sizeof(attr), 0);
	if (ruleset < 0) {
		return errno;
	}
	/* The writable directories first, as they resolve now: the other rules are checked against
	 * them (add_path_rule). */
	writable_dir *w = calloc(P.nrules ? P.nrules : 1, sizeof(*w));
	size_t nw = 0;
	if (!w) {
		close(ruleset);
		return ENOMEM;
	}
	for (size_t i = 0; i < P.nrules; i++) {
		sandbox_access a = P.rules[i].access;
		if (a == SANDBOX_RW || (a == SANDBOX_RW_STARTUP && proc == PROC_ALL)) {
			int fd = open(P.rules[i].path, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0 && fd_real_path(fd, w[nw].real, sizeof(w[nw].real))) {
				w[nw++].given = P.rules[i].path;
			}
			if (fd >= 0) {
				close(fd);
			}
		}
	}
	int rc = 0;
	for (size_t i = 0; i < P.nrules && !rc; i++) {
		if (P.rules[i].access != SANDBOX_RW_STARTUP || proc == PROC_ALL) {
			rc = add_path_rule(ruleset, P.rules[i].path, P.rules[i].access, attr.handled_access_fs, w, nw);
		}
	}
	/* Every process may read its own /proc/self (statm for max_memory, mem for the slowlog's
	 * watchdog); the zygote's layer must cover the /proc/<pid> of workers not yet forked. */
	if (!rc) {
		rc = add_path_rule(ruleset, proc == PROC_ALL ? "/proc" : "/proc/self", SANDBOX_RO, attr.handled_access_fs,
			NULL, 0);
	}
	for (size_t i = 0; exec_also && exec_also[i] && !rc; i++) {
		rc = add_path_rule(ruleset, exec_also[i], SANDBOX_EXEC, attr.handled_access_fs, w, nw);
	}
	free(w);
	for (size_t i = 0; i < P.nports && attr.handled_access_net && !rc; i++) {
		struct ll_net_port_attr port = { .allowed_access = LL_ACCESS_NET_CONNECT_TCP, .port = P.ports[i] };
		if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_NET_PORT, &port, 0) < 0) {
			rc = errno;
		}
	}
	if (!rc && syscall(SYS_landlock_restrict_self, ruleset, abi >= 7 ? restrict_flags : 0) < 0) {
		rc = errno;
	}
	close(ruleset);
	return rc;
}

/* ------------------------------------------------------------------ */
/* seccomp                                                             */
/* ------------------------------------------------------------------ */

#ifdef SANDBOX_AUDIT_ARCH

typedef struct {
	int nr;
	const char *name;
} syscall_name;

#define DENY(name) { SYS_##name, #name }
/* Syscalls no PHP app needs, each a known way out of a sandbox or into the kernel's attack
 * surface (Docker's default profile denies the same families): debugging other processes,
 * mounts and namespaces, kernel modules, keyrings, kexec and reboot, BPF and perf, io_uring
 * (its operations bypass seccomp), the clock, swap, quotas, raw I/O ports, file handles. */
static const syscall_name DENIED[] = {
	DENY(ptrace), DENY(process_vm_readv), DENY(process_vm_writev), DENY(pidfd_getfd),
	DENY(mount), DENY(umount2), DENY(fsopen), DENY(fsconfig), DENY(fsmount), DENY(fspick),
	DENY(move_mount), DENY(open_tree), DENY(mount_setattr), DENY(pivot_root), DENY(chroot),
	DENY(unshare), DENY(setns),
	DENY(kexec_load), DENY(kexec_file_load), DENY(reboot),
	DENY(bpf), DENY(perf_event_open), DENY(userfaultfd),
	DENY(init_module), DENY(finit_module), DENY(delete_module),
	DENY(keyctl), DENY(add_key), DENY(request_key),
	DENY(iopl), DENY(ioperm), DENY(modify_ldt),
	DENY(swapon), DENY(swapoff), DENY(acct), DENY(quotactl), DENY(quotactl_fd),
	DENY(settimeofday), DENY(clock_settime), DENY(clock_adjtime), DENY(adjtimex),
	DENY(open_by_handle_at), DENY(name_to_handle_at),
	DENY(io_uring_setup), DENY(io_uring_enter), DENY(io_uring_register),
	DENY(syslog), DENY(uselib), DENY(_sysctl), DENY(vhangup), DENY(sethostname), DENY(setdomainname),
};
static const syscall_name EXEC_CALLS[] = { DENY(execve), DENY(execveat) };
static const syscall_name SPECIAL[] = { DENY(clone), DENY(personality), DENY(clone3), DENY(ioctl) };

/* clone() flags that make new namespaces: unshare() by another door. */
#define CLONE_NEW_ANY 0x7E020000u   /* NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET */
/* personality() values that stay allowed (Docker's list): PER_LINUX, PER_LINUX32, UNAME26 and
 * the query. Others can turn off ASLR (ADDR_NO_RANDOMIZE) or make data executable for the
 * programs PHP executes. */
static const uint32_t PERSONALITY_OK[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffffu };
/* ioctl() requests that reach beyond the process through a terminal it holds (askr serve's
 * stderr is the developer's terminal): TIOCSTI types into it, as if at the keyboard, commands
 * the shell runs once askr exits (bubblewrap's CVE-2017-5226); TIOCLINUX can read and paste the
 * console's screen. The kernel takes `cmd` as 32 bits, so the low word is what it runs. */
static const uint32_t IOCTL_DENIED[] = { 0x5412 /* TIOCSTI */, 0x541C /* TIOCLINUX */ };

static const char *syscall_label(int nr)
{
	for (size_t i = 0; i < sizeof(DENIED) / sizeof(DENIED[0]); i++) if (DENIED[i].nr == nr) return DENIED[i].name;
	for (size_t i = 0; i < sizeof(EXEC_CALLS) / sizeof(EXEC_CALLS[0]); i++) if (EXEC_CALLS[i].nr == nr) return EXEC_CALLS[i].name;
	for (size_t i = 0; i < sizeof(SPECIAL) / sizeof(SPECIAL[0]); i++) if (SPECIAL[i].nr == nr) return SPECIAL[i].name;
	return "syscall";
}

/* A tiny BPF assembler: jumps name labels, resolved at the end (BPF jumps are 8-bit offsets). */
enum { L_NEXT = -1, L_DENY, L_ALLOW, L_ENOSYS, L_CLONE, L_PERSONALITY, L_IOCTL, L_EXECVEAT, L_TRAP, L_EPERM,
	L_SIGACTION,
	L_SIGACTION_SET, L_SCRATCH, L_COUNT = L_SCRATCH + 7 };   /* L_SCRATCH..: emit_ip_in's, one allow */
typedef struct {
	uint16_t code;
	int jt, jf;
	uint32_t k;
} bpf_ins;

typedef struct {
	bpf_ins ins[160];
	int n;
	int label[L_COUNT];
	bool overflow;
} bpf_prog;

static void emit(bpf_prog *p, uint16_t code, uint32_t k, int jt, int jf)
{
	if (p->n == (int)(sizeof(p->ins) / sizeof(p->ins[0]))) {
		p->overflow = true;
		return;
	}
	p->ins[p->n++] = (bpf_ins){ code, jt, jf, k };
}

static void mark(bpf_prog *p, int label)
{
	p->label[label] = p->n;
}

#define LD(off) emit(p, BPF_LD | BPF_W | BPF_ABS, (off), L_NEXT, L_NEXT)
#define RET(v) emit(p, BPF_RET | BPF_K, (v), L_NEXT, L_NEXT)
#define JEQ(k, jt, jf) emit(p, BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf))
#define JGE(k, jt, jf) emit(p, BPF_JMP | BPF_JGE | BPF_K, (k), (jt), (jf))
#define JGT(k, jt, jf) emit(p, BPF_JMP | BPF_JGT | BPF_K, (k), (jt), (jf))
#define JSET(k, jt, jf) emit(p, BPF_JMP | BPF_JSET | BPF_K, (k), (jt), (jf))
#define JA(label) emit(p, BPF_JMP | BPF_JA, (uint32_t)(label), L_NEXT, L_NEXT)

#define OFF_NR offsetof(struct seccomp_data, nr)
#define OFF_ARCH offsetof(struct seccomp_data, arch)
#define OFF_IP_LO offsetof(struct seccomp_data, instruction_pointer)
#define OFF_IP_HI (offsetof(struct seccomp_data, instruction_pointer) + 4)
#define OFF_ARG0_LO offsetof(struct seccomp_data, args[0])
#define OFF_ARG1_LO offsetof(struct seccomp_data, args[1])
#define OFF_ARG1_HI (offsetof(struct seccomp_data, args[1]) + 4)
#define OFF_ARG4_LO offsetof(struct seccomp_data, args[4])

/* Where this process's C library code lies: a denied call made from there is the PHP process's
 * own (its SIGSYS handler turns it into EPERM and counts it). One made from anywhere else is a
 * program PHP executed (allow_exec): execve reset its handlers, so a trap would kill it; it gets
 * a plain EPERM instead. ASLR puts an executed program's libc elsewhere. */
typedef struct {
	uint64_t start, end;
} code_range;

static int libc_cb(struct dl_phdr_info *info, size_t size, void *out)
{
	if (!info->dlpi_name || !strstr(info->dlpi_name, "/libc.so")) {
		return 0;
	}
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			((code_range *)out)->start = info->dlpi_addr + ph->p_vaddr;
			((code_range *)out)->end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/* Jump to `inside` when the call comes from [range.start, range.end), else to `outside`: 64-bit
 * values compared as two 32-bit words. `labels`: three free labels for its own jumps. */
static void emit_ip_in(bpf_prog *p, code_range range, int inside, int outside, int labels)
{
	int start_lo = labels, end = labels + 1, end_lo = labels + 2;
	LD(OFF_IP_HI);
	JGT((uint32_t)(range.start >> 32), end, L_NEXT);
	JEQ((uint32_t)(range.start >> 32), start_lo, outside);
	mark(p, start_lo);
	LD(OFF_IP_LO);
	JGE((uint32_t)range.start, end, outside);
	mark(p, end);
	LD(OFF_IP_HI);
	JGT((uint32_t)(range.end >> 32), outside, L_NEXT);
	JEQ((uint32_t)(range.end >> 32), end_lo, inside);
	mark(p, end_lo);
	LD(OFF_IP_LO);
	JGE((uint32_t)range.end, outside, inside);
}

/* The filter. trap: trap denials made from our libc (see above); else every denial is EPERM.
 * deny_exec: execve and execveat are denied, but for exec_fd >= 0, execveat(exec_fd, "", ...,
 * AT_EMPTY_PATH): the launcher's one exec of the CLI, whose exec_fd is close-on-exec, so that
 * after it the CLI and whatever it starts run nothing (the kernel reads both as 32-bit ints). */
static bool build_filter(bpf_prog *p, bool trap, bool deny_exec, int exec_fd, struct sock_filter *out, int *len)
{
	code_range libc = { 0, 0 };
	if (trap) {
		dl_iterate_phdr(libc_cb, &libc);
	}
	memset(p, 0, sizeof(*p));
	LD(OFF_ARCH);
	JEQ(SANDBOX_AUDIT_ARCH, L_NEXT, L_DENY);   /* int 0x80 (i386 numbers) from a 64-bit process */
	LD(OFF_NR);
	JGE(X32_SYSCALL_BIT, L_DENY, L_NEXT);       /* x32 numbers reach the same calls by other names */
	JEQ(SYS_clone3, L_ENOSYS, L_NEXT);          /* its flags are in memory BPF cannot read: glibc falls back to clone */
	JEQ(SYS_clone, L_CLONE, L_NEXT);
	JEQ(SYS_personality, L_PERSONALITY, L_NEXT);
	JEQ(SYS_ioctl, L_IOCTL, L_NEXT);
	if (trap && libc.end) {
		JEQ(SYS_rt_sigaction, L_SIGACTION, L_NEXT);
	}
	for (size_t i = 0; i < sizeof(DENIED) / sizeof(DENIED[0]); i++) {
		JEQ((uint32_t)DENIED[i].nr, L_DENY, L_NEXT);
	}
	if (deny_exec) {
		JEQ(SYS_execve, L_DENY, L_NEXT);
		JEQ(SYS_execveat, exec_fd >= 0 ? L_EXECVEAT : L_DENY, L_NEXT);
	}
	RET(SECCOMP_RET_ALLOW);
	if (deny_exec && exec_fd >= 0) {
		mark(p, L_EXECVEAT);
		LD(OFF_ARG0_LO);
		JEQ((uint32_t)exec_fd, L_NEXT, L_DENY);
		LD(OFF_ARG4_LO);
		JEQ(AT_EMPTY_PATH, L_ALLOW, L_DENY);
	}
	mark(p, L_CLONE);                           /* (BPF jumps only forward: each block returns) */
	LD(OFF_ARG0_LO);
	JSET(CLONE_NEW_ANY, L_DENY, L_NEXT);
	RET(SECCOMP_RET_ALLOW);
	mark(p, L_PERSONALITY);
	LD(OFF_ARG0_LO);
	for (size_t i = 0; i < sizeof(PERSONALITY_OK) / sizeof(PERSONALITY_OK[0]); i++) {
		JEQ(PERSONALITY_OK[i], L_ALLOW, L_NEXT);
	}
	JA(L_DENY);
	mark(p, L_IOCTL);
	LD(OFF_ARG1_LO);
	for (size_t i = 0; i < sizeof(IOCTL_DENIED) / sizeof(IOCTL_DENIED[0]); i++) {
		JEQ(IOCTL_DENIED[i], L_DENY, L_NEXT);
	}
	mark(p, L_ALLOW);
	RET(SECCOMP_RET_ALLOW);
	mark(p, L_ENOSYS);
	RET(SECCOMP_RET_ERRNO | ENOSYS);
	if (trap && libc.end) {
		/* Our SIGSYS handler stays: PHP code (pcntl_signal) cannot replace it, and posix_spawn's
		 * child (popen, shell_exec), which resets handlers before its execve, keeps it, so a
		 * denied execve there is counted and fails with EPERM rather than killing the child.
		 * Queries (no new action) and programs PHP executed are left alone. */
		int allow = L_SCRATCH + 6;
		mark(p, L_SIGACTION);
		LD(OFF_ARG0_LO);
		JEQ(SIGSYS, L_NEXT, allow);
		LD(OFF_ARG1_LO);
		JEQ(0, L_NEXT, L_SIGACTION_SET);
		LD(OFF_ARG1_HI);
		JEQ(0, allow, L_SIGACTION_SET);
		mark(p, L_SIGACTION_SET);
		emit_ip_in(p, libc, L_EPERM, allow, L_SCRATCH);
		mark(p, allow);
		RET(SECCOMP_RET_ALLOW);
	}
	mark(p, L_DENY);
	if (trap && libc.end) {
		emit_ip_in(p, libc, L_TRAP, L_EPERM, L_SCRATCH + 3);
	} else if (trap) {
		JA(L_TRAP);
	} else {
		JA(L_EPERM);
	}
	mark(p, L_TRAP);
	RET(SECCOMP_RET_TRAP);
	mark(p, L_EPERM);
	RET(SECCOMP_RET_ERRNO | EPERM);
	if (p->overflow) {
		return false;
	}
	for (int i = 0; i < p->n; i++) {
		bpf_ins *in = &p->ins[i];
		struct sock_filter *f = &out[i];
		f->code = in->code;
		f->k = in->k;
		f->jt = f->jf = 0;
		if (BPF_CLASS(in->code) != BPF_JMP) {
			continue;
		}
		if (BPF_OP(in->code) == BPF_JA) {
			if (p->label[in->k] <= i) {
				return false;
			}
			f->k = (uint32_t)(p->label[in->k] - (i + 1));
			continue;
		}
		int jt = in->jt == L_NEXT ? 0 : p->label[in->jt] - (i + 1);
		int jf = in->jf == L_NEXT ? 0 : p->label[in->jf] - (i + 1);
		if (jt < 0 || jt > 255 || jf < 0 || jf > 255) {
			return false;
		}
		f->jt = (uint8_t)jt;
		f->jf = (uint8_t)jf;
	}
	*len = p->n;
	return true;
}

/* ---- the SIGSYS handler: async-signal-safe, so it formats its own log line ---- */

static volatile uint64_t *g_denied_counter;     /* the worker's SB_DENIED word, or NULL */
static uint64_t g_logged[8];                     /* syscall numbers (mod 512) already logged here */
static long g_utc_offset;                        /* local time's offset when the sandbox was applied */

typedef struct {
	char buf[512];
	size_t len;
} line_buf;

static void put_str(line_buf *b, const char *s)
{
	while (*s && b->len < sizeof(b->buf) - 2) {
		b->buf[b->len++] = *s++;
	}
}

static void put_uint(line_buf *b, uint64_t v, int width)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < 20);
	while (n < width && n < 20) {
		digits[n++] = '0';
	}
	while (n && b->len < sizeof(b->buf) - 2) {
		b->buf[b->len++] = digits[--n];
	}
}

/* "YYYY-MM-DD HH:MM:SS,mmm" (or ISO with T and Z), from days since the epoch by plain
 * arithmetic (Howard Hinnant's civil_from_days): localtime_r may take a lock. */
static void put_time(line_buf *b, bool iso)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t t = (int64_t)ts.tv_sec + (iso ? 0 : g_utc_offset);
	int64_t days = t / 86400, secs = t % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	int64_t doe = days - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9, y = yoe + era * 400 + (m <= 2);
	put_uint(b, (uint64_t)y, 4); put_str(b, "-"); put_uint(b, (uint64_t)m, 2); put_str(b, "-");
	put_uint(b, (uint64_t)d, 2); put_str(b, iso ? "T" : " ");
	put_uint(b, (uint64_t)(secs / 3600), 2); put_str(b, ":"); put_uint(b, (uint64_t)(secs / 60 % 60), 2);
	put_str(b, ":"); put_uint(b, (uint64_t)(secs % 60), 2); put_str(b, iso ? "." : ",");
	put_uint(b, (uint64_t)(ts.tv_nsec / 1000000), 3);
	if (iso) {
		put_str(b, "Z");
	}
}

static void log_denial(int nr)
{
	line_buf b = { .len = 0 };
	const char *name = syscall_label(nr);
	if (g_log.json) {
		put_str(&b, "{\"time\":\"");
		put_time(&b, true);
		put_str(&b, "\",\"level\":\"WARNING\",\"component\":\"");
		put_str(&b, g_log.name);
		put_str(&b, "\",\"message\":\"");
	} else {
		put_time(&b, false);
		put_str(&b, " WARNING [");
		put_str(&b, g_log.name);
		put_str(&b, "] ");
	}
	put_str(&b, "sandbox: denied syscall ");
	put_str(&b, name);
	put_str(&b, " (");
	put_uint(&b, (uint64_t)(unsigned)nr, 1);
	put_str(&b, "): it failed with EPERM; counted in askr_sandbox_denied_syscalls_total, logged once per process");
	put_str(&b, g_log.json ? "\"}\n" : "\n");
	ssize_t n = write(STDERR_FILENO, b.buf, b.len);
	(void)n;
}

static void on_sigsys(int sig, siginfo_t *si, void *context)
{
	int saved = errno;
	ucontext_t *uc = context;
	uc->uc_mcontext.gregs[REG_RAX] = -EPERM;   /* what the interrupted syscall returns */
	if (g_denied_counter) {
		__atomic_fetch_add(g_denied_counter, 1, __ATOMIC_RELAXED);
	}
	unsigned bit = (unsigned)si->si_syscall % 512;
	uint64_t mask = 1ULL << (bit % 64);
	if (!(__atomic_fetch_or(&g_logged[bit / 64], mask, __ATOMIC_RELAXED) & mask)) {
		log_denial(si->si_syscall);
	}
	errno = saved;
}

static int seccomp_install(bool trap, bool deny_exec, int exec_fd)
{
	static bpf_prog prog;
	struct sock_filter filter[sizeof(prog.ins) / sizeof(prog.ins[0])];
	int len = 0;
	if (!build_filter(&prog, trap, deny_exec, exec_fd, filter, &len)) {
		return E2BIG;
	}
	if (trap) {
		struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) < 0) {
			return errno;
		}
		struct tm tm;
		time_t now = time(NULL);
		if (localtime_r(&now, &tm)) {
			g_utc_offset = tm.tm_gmtoff;
		}
	}
	struct sock_fprog fprog = { .len = (unsigned short)len, .filter = filter };
	/* No SECCOMP_FILTER_FLAG_TSYNC: the zygote has one thread; threads created later inherit it. */
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0 ? errno : 0;
}

#else /* no SANDBOX_AUDIT_ARCH */

static int seccomp_install(bool trap, bool deny_exec, int exec_fd)
{
	return ENOSYS;
}

#endif

/* ------------------------------------------------------------------ */
/* Applying it                                                         */
/* ------------------------------------------------------------------ */

/* What PHP runs without, for the zygote's report to the master (not logged here: every
 * generation's zygote would repeat it at each reload). */
static void note_unenforced(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_unenforced(const char *fmt, ...)
{
	if (g_sandbox.nunenforced >= SANDBOX_MAX_UNENFORCED) {
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_sandbox.unenforced[g_sandbox.nunenforced++], sizeof(g_sandbox.unenforced[0]), fmt, ap);
	va_end(ap);
}

/* `rc` (an errno) from applying `name`: under `required 1` the zygote refuses to start (false,
 * "NAME: why" in `err`); otherwise PHP runs without what it would enforce, and says so. */
static bool refuse_or_warn(int rc, const char *name, const char *enforces, char *err, size_t errlen)
{
	if (P.required) {
		snprintf(err, errlen, "%s: %s", name, strerror(rc));
		return false;
	}
	note_unenforced("sandbox: %s failed (%s): PHP runs without %s", name, strerror(rc), enforces);
	return true;
}

bool sandbox_apply_zygote(char *err, size_t errlen)
{
	int abi = sandbox_landlock_abi();
	int ll_errno = abi ? 0 : errno;
	bool seccomp_ok = sandbox_seccomp_available();
	int rc;
	if (P.required && (!abi || !seccomp_ok)) {
		snprintf(err, errlen, "[sandbox] required = true, but %s is not available on this kernel (%s); "
			"askr doctor shows what it offers",
			!abi ? "Landlock" : "seccomp", !abi ? strerror(ll_errno) : "no SECCOMP_RET_TRAP");
		return false;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		return refuse_or_warn(errno, "prctl(PR_SET_NO_NEW_PRIVS)", "the sandbox", err, errlen);
	}
	if (!abi) {
		note_unenforced("sandbox: Landlock is not available on this kernel (%s): PHP runs without "
			"filesystem rules ([sandbox] required = true refuses to start instead)", strerror(ll_errno));
	} else if ((rc = landlock_layer(abi, PROC_ALL, NULL, 0))) {
		if (!refuse_or_warn(rc, "Landlock", "filesystem rules", err, errlen)) {
			return false;
		}
	} else {
		g_sandbox.landlock_abi = abi;
	}
	if (!seccomp_ok) {
		note_unenforced("sandbox: seccomp filters are not available here: PHP runs without the "
			"syscall filter ([sandbox] required = true refuses to start instead)");
	} else if ((rc = seccomp_install(true, !P.allow_exec, -1))) {
		return refuse_or_warn(rc, "seccomp", "the syscall filter", err, errlen);
	} else {
		g_sandbox.seccomp = true;
	}
	return true;
}

void sandbox_enter_worker(volatile uint64_t *denied_counter)
{
#ifdef SANDBOX_AUDIT_ARCH
	g_denied_counter = denied_counter;
	memset(g_logged, 0, sizeof(g_logged));
#endif
	if (!g_sandbox.landlock_abi) {
		return;
	}
	/* Programs the worker executes (allow_exec) log their Landlock denials to audit too. */
	int rc = landlock_layer(g_sandbox.landlock_abi, PROC_SELF, NULL,
		P.allow_exec ? LL_RESTRICT_SELF_LOG_NEW_EXEC_ON : 0);
	if (rc) {
		/* The zygote's layer still holds; only the isolation from sibling workers is lost. */
		askr_log("WARNING", "sandbox: this worker's own Landlock layer failed (%s)", strerror(rc));
	}
}

int sandbox_exec(int policy_fd, bool ignore_sigterm, char **argv)
{
	char err[512];
	if (!argv || !argv[0]) {
		fprintf(stderr, "askr-php --sandbox-exec: no program to run\n");
		return 2;
	}
	if (!sandbox_policy_read(policy_fd, err, sizeof(err))) {
		fprintf(stderr, "askr-php --sandbox-exec: %s\n", err);
		return 2;
	}
	if (ignore_sigterm) {
		signal(SIGTERM, SIG_IGN);     /* an ignored signal stays ignored across execve */
	}
	int abi = sandbox_landlock_abi();
	bool seccomp_ok = sandbox_seccomp_available();
	if (P.required && (!abi || !seccomp_ok)) {
		fprintf(stderr, "askr: [sandbox] required = true, but %s is not available on this kernel\n",
			!abi ? "Landlock" : "seccomp");
		return 126;
	}
	/* The zygote's report (the master logs it) covers an unavailable mechanism; queue runs stay quiet. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 && P.required) {
		fprintf(stderr, "askr: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return 126;
	}
	if (abi) {
		/* The program itself and its loader must be executable even when allow_exec is false
		 * (the loader then could run any readable file, "ld.so FILE": the seccomp filter below
		 * is what stops the CLI from executing anything after this exec). */
		const char *exec_also[] = { argv[0], dynamic_loader(), NULL };
		int rc = landlock_layer(abi, PROC_SELF, exec_also, LL_RESTRICT_SELF_LOG_NEW_EXEC_ON);
		if (rc && P.required) {
			fprintf(stderr, "askr: Landlock: %s\n", strerror(rc));
			return 126;
		}
	}
	/* allow_exec false: the filter lets through only execveat() of this descriptor, which
	 * closes as the CLI starts; every execve the CLI makes then fails with EPERM. */
	int exec_fd = -1;
	if (!P.allow_exec && (exec_fd = open(argv[0], O_PATH | O_CLOEXEC)) < 0) {
		fprintf(stderr, "askr: cannot run %s: %s\n", argv[0], strerror(errno));
		return 127;
	}
	if (seccomp_ok) {
		int rc = seccomp_install(false, !P.allow_exec, exec_fd);
		if (rc && P.debug) {
			fprintf(stderr, "askr: seccomp filter: %s\n", strerror(rc));
		}
		if (rc && P.required) {
			fprintf(stderr, "askr: seccomp: %s\n", strerror(rc));
			return 126;
		}
	}
	if (exec_fd >= 0) {
		syscall(SYS_execveat, exec_fd, "", argv, environ, AT_EMPTY_PATH);
	} else {
		execv(argv[0], argv);
	}
	fprintf(stderr, "askr: cannot run %s: %s\n", argv[0], strerror(errno));
	return 127;
}
