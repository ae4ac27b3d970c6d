/*
 * askr-php: the PHP side of Askr. This file: the zygote and main(); the worker's start.
 *
 * One program, two roles (see docs/internals.md):
 *   zygote  -- starts the PHP engine once (module startup, php.ini, OPcache shared memory),
 *              then forks workers on request from the master over a text control socket,
 *              reaps them and reports their exits. It never runs a PHP script.
 *   worker  -- a forked child: connects to its front's channel socket, says HELLO, then
 *              serves one request at a time over binary frames until the channel closes.
 *
 * This is a SAPI of its own, not php_embed_init(): the embed SAPI forces ini values
 * (output_buffering=0, max_execution_time=0, ...) over php.ini, and its name disables
 * OPcache. Where code follows an upstream SAPI it says so: php-src sapi/embed/php_embed.c
 * (module table), sapi/cli/php_cli.c (startup order, unwinding), sapi/fpm/fpm/fpm_main.c
 * (CGI request semantics our users migrate from), nginx unit's nxt_php_sapi.c (request
 * state in SG(server_context), engine started once before forking).
 *
 * The program's files follow the seam nginx unit draws between its SAPI and libunit:
 *   askr_chan.c/.h      channel, wire codec, scoreboard, logging, request queue: no PHP headers
 *   askr_sapi.c         the SAPI hooks, classic mode, the PHP functions askr adds
 *   askr_worker_mode.c  worker mode's per-request context (follows php-src's main/main.c)
 *   askr_main.c         this file
 *   askr_sandbox.c/.h   [sandbox]: Landlock and seccomp (PHP-free too)
 */

#define _GNU_SOURCE   /* pipe2, memrchr (used by PHP headers) */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>

#include "askr.h"
#include "askr_sandbox.h"

/* ------------------------------------------------------------------ */
/* The worker's life                                                   */
/* ------------------------------------------------------------------ */

/* Zygote options every worker it forks inherits (--max-memory, --slowlog-*). */
static struct {
	uint64_t max_memory;
	uint64_t slowlog_timeout_ms;
	int slowlog_fd;               /* --slowlog-file opened by the zygote, or -1: the error log */
} g_opts = { 0, 0, -1 };

static int worker_run(const worker_config *cfg, const char *script)
{
	/* Before anything else the worker does: its own Landlock layer (the zygote's filter and
	 * first layer are inherited already). */
	volatile uint64_t *slot = scoreboard_slot(cfg->worker_id);
	sandbox_enter_worker(slot ? slot + SB_DENIED : NULL);
	W.cfg = cfg;
	W.max_memory = g_opts.max_memory;
	W.script = script;
	snprintf(g_log.name, sizeof(g_log.name), "%s#%u", g_log.base, cfg->position);
	if (!channels_open()) {
		return 1;
	}
	W.req.chan = W.chan;
	W.req.worker_id = cfg->worker_id;
	scoreboard_claim(cfg->worker_id);
	/* Only with a slowlog: a second thread makes every request of this process ~3 us dearer
	 * (hello.php 16 -> 19 us of PHP worker CPU, measured), glibc taking its locks for real. */
	if (g_opts.slowlog_timeout_ms) {
		watchdog_start(g_opts.slowlog_timeout_ms, g_opts.slowlog_fd);
	}
	/* Classic: ready now. Worker mode: ready when the script first asks for a request. */
	return script ? serve_worker_script() : classic_loop();
}

/* ------------------------------------------------------------------ */
/* Zygote                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
	pid_t pid;
	uint32_t worker_id;
} child_entry;

static int g_sigchld_pipe[2] = { -1, -1 };   /* the SIGCHLD handler wakes the zygote's poll() */

static void on_sigchld(int sig)
{
	int saved = errno;
	ssize_t n = write(g_sigchld_pipe[1], "c", 1);
	(void)n;
	errno = saved;
}

static void ctl_send(int fd, const char *fmt, ...) ZEND_ATTRIBUTE_FORMAT(printf, 2, 3);
static void ctl_send(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf)) {
		write_all(fd, buf, (size_t)n);    /* a vanished master shows up as EOF on the next read */
	}
}

static void reap_children(int ctl_fd, child_entry *kids, size_t *nkids)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < *nkids; i++) {
			if (kids[i].pid != pid) {
				continue;
			}
			if (WIFSIGNALED(status)) {
				ctl_send(ctl_fd, "exited %u %d -1 %d\n", kids[i].worker_id, (int)pid, WTERMSIG(status));
			} else {
				ctl_send(ctl_fd, "exited %u %d %d 0\n", kids[i].worker_id, (int)pid, WEXITSTATUS(status));
			}
			kids[i] = kids[--*nkids];
			break;
		}
	}
}

/*
 * The control loop. Returns in the zygote (EOF on the control socket: 0) and in each
 * forked worker (its exit code), so both unwind through main().
 */
static int zygote_run(int ctl_fd, uint32_t generation)
{
	char line[4096];
	size_t used = 0;
	child_entry *kids = NULL;
	size_t nkids = 0, kids_cap = 0;
	struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP };

	if (pipe2(g_sigchld_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		ctl_send(ctl_fd, "failed pipe2: %s\n", strerror(errno));
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	ctl_send(ctl_fd, "ready %d\n", (int)getpid());

	for (;;) {
		struct pollfd pfd[2] = { { ctl_fd, POLLIN, 0 }, { g_sigchld_pipe[0], POLLIN, 0 } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			askr_log("ERROR", "poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents) {
			char drain[64];
			while (read(g_sigchld_pipe[0], drain, sizeof(drain)) > 0) {
			}
			reap_children(ctl_fd, kids, &nkids);
		}
		if (!pfd[0].revents) {
			continue;
		}
		ssize_t n = read(ctl_fd, line + used, sizeof(line) - 1 - used);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;                             /* master gone: stop forking, leave workers be */
		}
		used += (size_t)n;
		char *start = line, *nl;
		while ((nl = memchr(start, '\n', used - (size_t)(start - line)))) {
			*nl = '\0';
			char *save, *cmd = strtok_r(start, " ", &save);
			char *id = strtok_r(NULL, " ", &save), *path = strtok_r(NULL, " ", &save);
			char *max = strtok_r(NULL, " ", &save), *queue = strtok_r(NULL, " ", &save);
			char *position = strtok_r(NULL, " ", &save);
			start = nl + 1;
			if (!cmd || strcmp(cmd, "spawn") || !id || !path || !max || strtok_r(NULL, " ", &save)) {
				askr_log("WARNING", "ignoring bad control line");
				continue;
			}
			worker_config cfg = {
				.worker_id = (uint32_t)strtoul(id, NULL, 10), .generation = generation,
				.max_requests = strtoul(max, NULL, 10), .channel_paths = path,
				.queue_fd = queue ? atoi(queue) : -1,
				.position = (uint32_t)strtoul(position ? position : id, NULL, 10),
			};
			if (nkids == kids_cap) {
				kids_cap = kids_cap ? kids_cap * 2 : 16;
				kids = realloc(kids, kids_cap * sizeof(*kids));
				if (!kids) {
					askr_log("ERROR", "out of memory");
					return 1;
				}
			}
			pid_t pid = fork();
			if (pid == 0) {
				/* Worker: drop the zygote's plumbing, restore what we changed. SIGPIPE stays
				 * ignored on purpose: a vanished front must be an EPIPE, not a silent death. */
				signal(SIGCHLD, SIG_DFL);
				close(g_sigchld_pipe[0]);
				close(g_sigchld_pipe[1]);
				close(ctl_fd);
				free(kids);
				return worker_run(&cfg, W.script);
			}
			if (pid < 0) {
				askr_log("ERROR", "fork: %s", strerror(errno));
				ctl_send(ctl_fd, "exited %u 0 1 0\n", cfg.worker_id);
				continue;
			}
			kids[nkids++] = (child_entry){ pid, cfg.worker_id };
			ctl_send(ctl_fd, "spawned %u %d\n", cfg.worker_id, (int)pid);
		}
		used -= (size_t)(start - line);
		memmove(line, start, used);
		if (used == sizeof(line) - 1) {
			askr_log("WARNING", "control line too long; dropped");
			used = 0;
		}
	}
	free(kids);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The sandbox: what PHP's own configuration says it reads and writes   */
/* ------------------------------------------------------------------ */

/* main/php_ini.c exports these (PHPAPI) without declaring them in a header: php.ini's path, the
 * scanned conf.d directory, and the files read there, comma-and-newline separated. */
extern char *php_ini_opened_path, *php_ini_scanned_path, *php_ini_scanned_files;

static char g_sandbox_error[600];             /* why the sandbox refused to start (required) */
static zend_result (*g_next_post_startup)(void);

/* The directory of a session.save_path ("N;/path", "N;MODE;/path" or "/path"). */
static void add_save_path(const char *value)
{
	const char *dir = value ? strrchr(value, ';') : NULL;
	dir = dir ? dir + 1 : value;
	if (dir && *dir) {
		sandbox_add_path(SANDBOX_RW, dir);
	}
}

/* Each entry of a list joined by `sep` (include_path, php_ini_scanned_files), resolved through
 * symlinks too (Debian's conf.d files link into mods-available/). */
static void add_list(sandbox_access access, const char *list, const char *sep)
{
	if (!list) {
		return;
	}
	char *copy = strdup(list), *save = NULL;
	for (char *item = copy ? strtok_r(copy, sep, &save) : NULL; item; item = strtok_r(NULL, sep, &save)) {
		sandbox_add_path(access, item);
		char real[PATH_MAX];
		if (item[0] == '/' && realpath(item, real) && strcmp(real, item)) {
			sandbox_add_path(access, real);
		}
	}
	free(copy);
}

/* error_log = /path/file: PHP creates it at its first error; we create it now (as PHP would,
 * 0644) so a rule can name the file and not its whole directory. */
static void add_error_log(const char *path)
{
	if (!path || path[0] != '/') {
		return;                        /* unset (the SAPI's log: stderr) or syslog */
	}
	/* O_NOFOLLOW: not through a symlink PHP may have left in a directory it writes. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd >= 0) {
		close(fd);
	}
	sandbox_add_path(SANDBOX_RW, path);
}

static void add_php_paths(void)
{
	sandbox_add_path(SANDBOX_RO, INI_STR("extension_dir"));
	sandbox_add_path(SANDBOX_RO, php_ini_opened_path);
	sandbox_add_path(SANDBOX_RO, php_ini_scanned_path);
	add_list(SANDBOX_RO, php_ini_scanned_files, ",\n");
	add_list(SANDBOX_RO, PG(include_path), ":");
	add_save_path(INI_STR("session.save_path"));
	/* php_get_temporary_directory()'s choice, made here: it caches an emalloc'd string that module
	 * startup's memory manager would free under it. */
	const char *sys_temp = INI_STR("sys_temp_dir"), *env_tmp = getenv("TMPDIR");
	sandbox_add_path(SANDBOX_RW, sys_temp && *sys_temp ? sys_temp : env_tmp && *env_tmp ? env_tmp : "/tmp");
	sandbox_add_path(SANDBOX_RW, INI_STR("upload_tmp_dir"));
	add_error_log(PG(error_log));
	sandbox_add_path(SANDBOX_RW, INI_STR("opcache.file_cache"));
	/* OPcache makes (and unlinks) its lock file there right after this hook: the zygote only. */
	sandbox_add_path(SANDBOX_RW_STARTUP, INI_STR("opcache.lockfile_path"));
	sandbox_add_path(SANDBOX_RO, INI_STR("opcache.preload"));
}

/* Called by zend_post_startup(): php.ini is parsed and every extension started, and no PHP code
 * has run yet. OPcache chains this from its own post-startup and runs opcache.preload (app code,
 * in this zygote) only after it returns, so preloading happens inside the sandbox. */
static zend_result sandbox_post_startup(void)
{
	if (g_next_post_startup && g_next_post_startup() != SUCCESS) {
		return FAILURE;
	}
	add_php_paths();
	if (!sandbox_apply_zygote(g_sandbox_error, sizeof(g_sandbox_error))) {
		return FAILURE;
	}
	return SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Command line and main                                               */
/* ------------------------------------------------------------------ */

/* Append one --ini KEY=VALUE as an ini line. Like php-cli's -d, a value starting with a
 * non-alphanumeric character is quoted so the ini scanner takes it literally. */
static bool ini_append(char **buf, size_t *len, size_t *cap, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (strchr(kv, '\n') || eq == kv) {
		return false;
	}
	size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
	const char *val = eq ? eq + 1 : "1";
	bool quote = *val && !isalnum((unsigned char)*val) && *val != '"' && *val != '\'';
	if (!grow(buf, cap, *len + klen + strlen(val) + 6)) {
		return false;
	}
	*len += (size_t)sprintf(*buf + *len, "%.*s=%s%s%s\n", (int)klen, kv, quote ? "\"" : "", val,
		quote ? "\"" : "");
	return true;
}

/* The zygote loop (and, after fork, the worker) inside a block that catches PHP bailouts,
 * as php_cli.c's main() does; a bailout reaching here is a bug, not a request error. */
static int run_guarded(int ctl_fd, uint32_t generation)
{
	volatile int rc = 1;
	zend_first_try {
		rc = zygote_run(ctl_fd, generation);
	} zend_catch {
		askr_log("ERROR", "unexpected PHP bailout outside a request");
		rc = 1;
	} zend_end_try();
	return rc;
}

static void usage(void)
{
	fputs("usage: askr-php --zygote --control-fd FD --generation G [--ini-file PATH]\n"
		"                [--ini KEY=VALUE]... [--mode classic|worker] [--worker-script PATH]\n"
		"                [--app-base DIR] [--max-memory BYTES] [--slowlog-timeout-ms MS]\n"
		"                [--slowlog-file PATH]\n"
		"                [--worker-log-name NAME] [--scoreboard PATH] [--sandbox-fd FD]\n"
		"       askr-php --sandbox-probe\n"
		"       askr-php --sandbox-exec --sandbox-fd FD [--ignore-sigterm] -- PROGRAM [ARG]...\n", stderr);
}

int main(int argc, char **argv)
{
	int ctl_fd = -1, rc = 1, sandbox_fd = -1;
	bool zygote = false, sapi_started = false, module_started = false, sandbox_exec_mode = false;
	bool ignore_sigterm = false;
	char **program = NULL;
	unsigned long generation = 0;
	const char *ini_file = NULL, *mode = "classic", *log_name = "php", *scoreboard = NULL;
	const char *worker_script = NULL, *slowlog_file = NULL;
	char *ini = NULL;
	size_t ini_len = 0, ini_cap = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--zygote")) { zygote = true; continue; }
		if (!strcmp(a, "--sandbox-probe")) { sandbox_probe_print(); return 0; }
		if (!strcmp(a, "--sandbox-exec")) { sandbox_exec_mode = true; continue; }
		if (!strcmp(a, "--ignore-sigterm")) { ignore_sigterm = true; continue; }
		if (!strcmp(a, "--")) { program = argv + i + 1; break; }
		if (!v) { usage(); return 2; }
		i++;
		if (!strcmp(a, "--control-fd")) ctl_fd = atoi(v);
		else if (!strcmp(a, "--generation")) generation = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--ini-file")) ini_file = v;
		else if (!strcmp(a, "--mode")) mode = v;
		else if (!strcmp(a, "--worker-script")) worker_script = v;
		else if (!strcmp(a, "--app-base")) W.app_base = v;
		else if (!strcmp(a, "--worker-log-name")) log_name = v;
		else if (!strcmp(a, "--scoreboard")) scoreboard = v;
		else if (!strcmp(a, "--log-format")) g_log.json = !strcmp(v, "json");
		else if (!strcmp(a, "--max-memory")) g_opts.max_memory = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--slowlog-timeout-ms")) g_opts.slowlog_timeout_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--slowlog-file")) slowlog_file = v;
		else if (!strcmp(a, "--sandbox-fd")) sandbox_fd = atoi(v);
		else if (!strcmp(a, "--ini")) {
			if (!ini_append(&ini, &ini_len, &ini_cap, v)) {
				fprintf(stderr, "askr-php: bad --ini %s\n", v);
				return 2;
			}
		} else { usage(); return 2; }
	}
	if (sandbox_exec_mode) {
		if (sandbox_fd < 0 || !program) {
			usage();
			return 2;
		}
		return sandbox_exec(sandbox_fd, ignore_sigterm, program);
	}
	if (!zygote || ctl_fd < 0) {
		usage();
		return 2;
	}
	snprintf(g_log.base, sizeof(g_log.base), "%s", log_name);
	snprintf(g_log.name, sizeof(g_log.name), "%s-zygote", g_log.base);
	fcntl(ctl_fd, F_SETFD, FD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);   /* a dead peer is an EPIPE we handle, not a kill */
	/* Stop signals sent to the whole process tree (systemd's default KillMode=control-group,
	 * kill -TERM -PGID, Ctrl-C) must not kill PHP mid-request: the master turns them into the
	 * right stop (drain, or at once) through the fronts, which close channels and STOP us; it
	 * uses SIGKILL when it means it. Set before PHP starts, so Zend records them as ours, and
	 * inherited by every worker the zygote forks. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	if (!strcmp(mode, "worker")) {
		if (!worker_script) {
			ctl_send(ctl_fd, "failed --mode worker needs --worker-script\n");
			goto out;
		}
		W.script = worker_script;     /* inherited by every worker: worker mode */
	} else if (strcmp(mode, "classic")) {
		ctl_send(ctl_fd, "failed unknown mode %s\n", mode);
		goto out;
	}
	if (slowlog_file) {
		/* Opened once here, as the user PHP runs as; each worker appends whole records to it. */
		g_opts.slowlog_fd = open(slowlog_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (g_opts.slowlog_fd < 0) {
			ctl_send(ctl_fd, "failed cannot open slowlog_file %s: %s\n", slowlog_file, strerror(errno));
			goto out;
		}
	}
	if (scoreboard && !scoreboard_map(scoreboard)) {
		ctl_send(ctl_fd, "failed cannot map the scoreboard %s: %s\n", scoreboard, strerror(errno));
		goto out;
	}
	if (sandbox_fd >= 0) {
		char err[512];
		if (!sandbox_policy_read(sandbox_fd, err, sizeof(err))) {
			ctl_send(ctl_fd, "failed %s\n", err);
			goto out;
		}
		/* Set before module startup: OPcache chains it (see sandbox_post_startup). */
		g_next_post_startup = zend_post_startup_cb;
		zend_post_startup_cb = sandbox_post_startup;
	}

	/* Engine startup, in the order of php_cli.c's main(). */
	zend_signal_startup();
	askr_sapi_module.additional_functions = askr_functions;
	sapi_startup(&askr_sapi_module);
	sapi_started = true;
	askr_sapi_module.ini_entries = ini;                 /* parsed after php.ini: they win */
	askr_sapi_module.php_ini_path_override = (char *)ini_file;
	if (askr_sapi_module.startup(&askr_sapi_module) == FAILURE) {
		if (g_sandbox_error[0]) {
			ctl_send(ctl_fd, "failed sandbox: %s\n", g_sandbox_error);
		} else {
			ctl_send(ctl_fd, "failed php_module_startup failed (see stderr)\n");
		}
		goto out;
	}
	module_started = true;
	if (sandbox_fd >= 0) {
		/* What PHP runs without, which the master logs, and what was applied, for /api/status
		 * (the master reads them before `ready`). */
		for (int i = 0; i < g_sandbox.nunenforced; i++) {
			ctl_send(ctl_fd, "sandbox-unenforced %s\n", g_sandbox.unenforced[i]);
		}
		ctl_send(ctl_fd, "sandbox %d %d\n", g_sandbox.landlock_abi, g_sandbox.seccomp ? 1 : 0);
	}
	/* Like php-fpm (fpm_main.c): do not chdir into each script's directory. That is three
	 * syscalls per request; the master starts us in the document root instead. */
	SG(options) |= SAPI_OPTION_NO_CHDIR;

	rc = run_guarded(ctl_fd, (uint32_t)generation);

out:
	/* Unwind in reverse, for the zygote and for each worker alike. */
	if (module_started) {
		php_module_shutdown();
	}
	if (sapi_started) {
		sapi_shutdown();
	}
	free(ini);
	return rc;
}
