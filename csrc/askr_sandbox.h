/*
 * askr_sandbox.h: Landlock and seccomp for every PHP process askr runs ([sandbox] in askr.toml).
 * PHP-free, like askr_chan.h: the PHP-derived paths are added by askr_main.c through
 * sandbox_add_path(). The policy format is in docs/internals.md ("The sandbox policy").
 */

#ifndef ASKR_SANDBOX_H
#define ASKR_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

/* What a path rule grants (a policy line's first word). SANDBOX_RW_STARTUP: read-write for the
 * zygote's module startup only (OPcache makes its lock file after the sandbox is on), not in
 * the workers' own layer. */
typedef enum { SANDBOX_RO, SANDBOX_RW, SANDBOX_EXEC, SANDBOX_RW_STARTUP } sandbox_access;

/* Read the policy the master wrote on `fd` (read to EOF, then closed). False, with `err` filled,
 * when it is malformed. */
bool sandbox_policy_read(int fd, char *err, size_t errlen);
/* One more path (PHP-derived, from askr_main.c); a missing one is skipped when applied. */
void sandbox_add_path(sandbox_access access, const char *path);

/* --sandbox-probe: what the kernel offers (the Landlock ABI, seccomp), one JSON line on stdout. */
void sandbox_probe_print(void);

#define SANDBOX_MAX_UNENFORCED 4

/* What was applied (0 / false until sandbox_apply_zygote() ran). */
typedef struct {
	int landlock_abi;      /* the ABI whose rights were enforced, 0 = no Landlock */
	bool seccomp;          /* the syscall filter is installed */
	/* What PHP runs without under `required 0` (a mechanism the kernel lacks, or one that
	 * failed), one sentence each: the zygote reports them to the master, which logs them once
	 * per master process rather than at every generation's start (askr/sandbox.py). */
	char unenforced[SANDBOX_MAX_UNENFORCED][256];
	int nunenforced;
} sandbox_state;
extern sandbox_state g_sandbox;

/* The zygote, after php.ini is parsed and before any PHP code runs (opcache.preload included):
 * no_new_privs, the first Landlock layer (covering every worker it will fork) and the seccomp
 * filter, inherited by every worker. False, with `err` filled, when a mechanism is missing and
 * the policy says `required 1`; otherwise a missing mechanism is skipped and noted in
 * g_sandbox.unenforced, for the master to log. */
bool sandbox_apply_zygote(char *err, size_t errlen);
/* A worker, right after fork: its own, nested Landlock layer (its own /proc/self only; its
 * siblings and the zygote are outside its domain, so it can neither ptrace nor signal them) and
 * the slot its denied syscalls are counted in (NULL: no scoreboard). */
void sandbox_enter_worker(volatile uint64_t *denied_counter);

/* --sandbox-exec: apply Landlock (execution limited to the policy's exec paths, the program and
 * the dynamic loader) and seccomp (EPERM without a trap: handlers do not survive execve), ignore
 * SIGTERM if asked, then exec argv[0]. Returns only on failure: the exit code. */
int sandbox_exec(int policy_fd, bool ignore_sigterm, char **argv);

#endif
