/*
 * askr_watchdog.c: the slow-request log ([worker] slowlog_timeout) and the PHP backtrace a
 * request_timeout kill leaves behind. php-fpm's slowlog (sapi/fpm/fpm/fpm_php_trace.c) stops the
 * child with ptrace from the master and reads its executor globals; we read the same structures
 * from a second thread of the worker itself, so nothing stops or interrupts the request:
 *
 *  - The PHP thread never sees a signal. A handler on the PHP thread would cut short sleep(),
 *    usleep(), stream_select() and poll() (the kernel never restarts those after a handler runs,
 *    SA_RESTART or not: PHP's sleep(3) would return 2 after 1 s), which changes what the app
 *    does. Here the thread's own timerfd fires and the master's TRACE_SIGNAL is blocked in the
 *    PHP thread and read from a signalfd in this one.
 *  - The backtrace is taken at the moment, even while PHP is blocked in a system call (the
 *    interesting case: a slow query, a sleep), not when the VM next runs.
 *  - Every read of PHP's memory is a pread() of our own /proc/self/mem, which fails (EIO)
 *    instead of crashing if a frame is freed while we read it. (Not process_vm_readv(): the
 *    sandbox's seccomp filter denies it, it being a way into other processes.) PHP keeps running while we
 *    read, so a frame may change under us: the trace can then be short or mixed, never a crash
 *    (and a request stuck long enough to be logged rarely moves).
 *
 * The PHP thread's cost per request: none without a watchdog (it runs only with slowlog_timeout
 * set); with one, a timerfd_settime() at the start and two atomic stores. This thread calls no
 * PHP function.
 */

#define _GNU_SOURCE   /* memrchr (used by PHP headers) */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>

#include "askr.h"

#define TRACE_MAX_FRAMES 64      /* php-fpm stops at 20; a framework's stack is often deeper */
#define TRACE_NAME_MAX   256
#define TRACE_BUF_SIZE   (TRACE_MAX_FRAMES * 2 * (TRACE_NAME_MAX + 32) + 2048)

static struct {
	int timer_fd;                /* slowlog: armed when each request starts; -1 when off */
	int signal_fd;               /* TRACE_SIGNAL from the master (request_timeout) */
	int out_fd;                  /* slowlog_file, or -1: the error log */
	int mem_fd;                  /* /proc/self/mem: how this thread reads PHP's memory */
	uint64_t timeout_ms;         /* slowlog_timeout, 0 = off */
	bool running;                /* the thread started: the PHP thread reports requests to it */
	/* Odd while a request runs: incremented when it starts and when it ends, so this thread
	 * can tell "the same request" from "a later one" without a lock. */
	_Atomic uint64_t seq;
	_Atomic uint64_t began_ns;   /* CLOCK_MONOTONIC when the running request started */
	char buf[TRACE_BUF_SIZE];
} WD = { .timer_fd = -1, .signal_fd = -1, .out_fd = -1, .mem_fd = -1 };

/* ------------------------------------------------------------------ */
/* Reading PHP's memory without trusting it                            */
/* ------------------------------------------------------------------ */

static bool peek(const void *addr, void *dst, size_t len)
{
	return addr && (uintptr_t)addr < (uintptr_t)INT64_MAX
		&& pread(WD.mem_fd, dst, len, (off_t)(uintptr_t)addr) == (ssize_t)len;
}

#define PEEK(addr, var) peek((addr), &(var), sizeof(var))

/* A NUL-terminated C string at `addr`, cut to cap - 1 bytes. */
static bool peek_cstr(const char *addr, char *dst, size_t cap)
{
	dst[0] = '\0';
	if (!addr) {
		return false;
	}
	/* Byte by byte from the end of a page would be slow; the string rarely crosses a page, so
	 * read what is left of this page, then the rest. */
	size_t got = 0;
	while (got < cap - 1) {
		uintptr_t a = (uintptr_t)addr + got;
		size_t page_left = 4096 - (a & 4095), want = cap - 1 - got;
		size_t n = want < page_left ? want : page_left;
		if (!peek((const void *)a, dst + got, n)) {
			break;
		}
		char *nul = memchr(dst + got, '\0', n);
		if (nul) {
			return true;
		}
		got += n;
	}
	dst[got] = '\0';
	return got > 0;
}

static bool peek_zstr(const zend_string *zs, char *dst, size_t cap)
{
	size_t len;
	dst[0] = '\0';
	if (!zs || !PEEK(&zs->len, len)) {
		return false;
	}
	if (len > cap - 1) {
		len = cap - 1;
	}
	if (!peek(zs->val, dst, len)) {
		return false;
	}
	dst[len] = '\0';
	return true;
}

/* "Class::method" or "function" for a frame's function; "[INCLUDE_OR_EVAL]" for included code;
 * false for the top-level script (the end of the trace, as php-fpm's). */
static bool frame_name(const zend_execute_data *ex, const zend_function *func, char *dst, size_t cap)
{
	zend_string *name = NULL;
	zend_class_entry *scope = NULL;
	if (!func) {
		snprintf(dst, cap, "???");
		return true;
	}
	if (!PEEK(&func->common.function_name, name)) {
		snprintf(dst, cap, "???");
		return true;
	}
	if (!name) {
		uint32_t info = 0;
		PEEK(&ex->This.u1.type_info, info);
		if (ZEND_CALL_KIND_EX(info) == ZEND_CALL_TOP_CODE) {
			return false;
		}
		snprintf(dst, cap, "[INCLUDE_OR_EVAL]");
		return true;
	}
	char fn[TRACE_NAME_MAX], cls[TRACE_NAME_MAX];
	peek_zstr(name, fn, sizeof(fn));
	if (PEEK(&func->common.scope, scope) && scope) {
		zend_string *cname = NULL;
		if (PEEK(&scope->name, cname) && peek_zstr(cname, cls, sizeof(cls))) {
			snprintf(dst, cap, "%s::%s", cls, fn);
			return true;
		}
	}
	snprintf(dst, cap, "%s", fn);
	return true;
}

/* Where the frame `ex` was called from: file and line of the nearest user-code frame below it
 * (php-fpm's slowlog shows the same: a call site per frame). A caller's opline is saved when it
 * makes the call, so it is current even though the running frame's may not be. */
static void call_site(const zend_execute_data *ex, char *file, size_t cap, uint32_t *line)
{
	file[0] = '\0';
	*line = 0;
	const zend_execute_data *prev = NULL;
	for (int guard = 0; PEEK(&ex->prev_execute_data, prev) && prev && guard < 1000; guard++, ex = prev) {
		zend_function *func = NULL;
		zend_uchar type = 0;
		if (!PEEK(&prev->func, func) || !func || !PEEK(&func->type, type)) {
			return;
		}
		if (!ZEND_USER_CODE(type)) {
			continue;
		}
		zend_string *filename = NULL;
		const zend_op *opline = NULL;
		if (PEEK(&func->op_array.filename, filename)) {
			peek_zstr(filename, file, cap);
		}
		if (PEEK(&prev->opline, opline) && opline) {
			PEEK(&opline->lineno, *line);
		}
		return;
	}
}

/* Append the backtrace of the PHP thread to `out` (fpm's layout: "[0xframe] name() file:line"). */
static size_t trace_frames(char *out, size_t cap)
{
	size_t len = 0;
	const zend_execute_data *ex = NULL;
	PEEK(&EG(current_execute_data), ex);
	for (int n = 0; ex && n < TRACE_MAX_FRAMES && len < cap; n++) {
		const zend_function *func = NULL;
		char name[2 * TRACE_NAME_MAX + 4], file[TRACE_NAME_MAX * 4];
		uint32_t line;
		if (!PEEK(&ex->func, func)) {
			break;
		}
		if (!frame_name(ex, func, name, sizeof(name))) {
			break;
		}
		call_site(ex, file, sizeof(file), &line);
		int w = snprintf(out + len, cap - len, "[0x%016lx] %s() %s:%u\n", (unsigned long)(uintptr_t)ex, name,
			file[0] ? file : "unknown", line);
		if (w < 0) {
			break;
		}
		len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
		if (!PEEK(&ex->prev_execute_data, ex)) {
			break;
		}
	}
	if (len == 0) {
		len = (size_t)snprintf(out, cap, "(no PHP frame: PHP is between scripts)\n");
	}
	return len < cap ? len : cap - 1;
}

/* The whole record: what ran, for how long, and the backtrace, to slowlog_file or the log. */
static void trace_dump(const char *why)
{
	uint64_t seq = atomic_load(&WD.seq);
	if (!(seq & 1)) {
		askr_log("WARNING", "%s: no request running, so no PHP backtrace", why);
		return;
	}
	double elapsed = (double)(clock_ns(CLOCK_MONOTONIC) - atomic_load(&WD.began_ns)) / 1e9;
	char uri[SB_URI_BYTES] = "?", method[16] = "", script[1024] = "";
	volatile uint64_t *slot = scoreboard_slot(W.cfg->worker_id);
	if (slot) {
		memcpy(uri, (const char *)(uintptr_t)(slot + SB_URI), sizeof(uri));
		uri[sizeof(uri) - 1] = '\0';
	}
	const char *m = NULL;
	if (PEEK(&W.req.method, m)) {
		peek_cstr(m, method, sizeof(method));
	}
	const char *path = NULL;
	if (PEEK(&SG(request_info).path_translated, path)) {
		peek_cstr(path, script, sizeof(script));
	}

	char *b = WD.buf;
	size_t cap = sizeof(WD.buf), len = 0;
	len += (size_t)snprintf(b, cap, "%s: %s%s%s running %.3f s in pid %d (%s); PHP backtrace:\n"
		"script_filename = %s\n", why, method, method[0] ? " " : "", uri, elapsed, (int)getpid(), g_log.name,
		script[0] ? script : "?");
	if (len >= cap) {
		len = cap - 1;
	}
	len += trace_frames(b + len, cap - len);
	if (atomic_load(&WD.seq) != seq) {
		len += (size_t)snprintf(b + len, cap - len, "(the request ended while this was read)\n");
		if (len >= cap) {
			len = cap - 1;
		}
	}
	if (WD.out_fd < 0) {
		log_block("WARNING", b, len);
		return;
	}
	/* php-fpm's slowlog file layout: a blank line, a dated header, then the record. One write
	 * with O_APPEND, so workers' records do not interleave. */
	char head[64];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t hl = strftime(head, sizeof(head), "\n[%d-%b-%Y %H:%M:%S] ", &tm);
	struct iovec iov[2] = { { head, hl }, { b, len } };
	if (!write_all_iov(WD.out_fd, iov, 2)) {
		askr_log("WARNING", "cannot write the slowlog: %s", strerror(errno));
	}
}

/* ------------------------------------------------------------------ */
/* The thread                                                          */
/* ------------------------------------------------------------------ */

static void *watchdog_main(void *arg)
{
	/* SIGSYS stays deliverable here: were this thread to make a call the sandbox traps, a
	 * blocked SIGSYS would kill the process instead of failing the call with EPERM. */
	sigset_t sys;
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	struct pollfd pfd[2] = { { WD.signal_fd, POLLIN, 0 }, { WD.timer_fd, POLLIN, 0 } };
	nfds_t n = WD.timer_fd >= 0 ? 2 : 1;
	for (;;) {
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			askr_log("WARNING", "watchdog: poll: %s; no slowlog from now on", strerror(errno));
			return NULL;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			if (read(WD.signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				/* The master's request_timeout: the front has answered 504; say where PHP was,
				 * then go, as the master would have made us (it SIGKILLs us if this hangs). */
				trace_dump("request_timeout");
				kill(getpid(), SIGKILL);
			}
		}
		if (n == 2 && pfd[1].revents) {
			uint64_t fired;
			if (read(WD.timer_fd, &fired, sizeof(fired)) != (ssize_t)sizeof(fired)) {
				continue;
			}
			/* The timer was armed by the latest request to start: it is slow if it still runs. */
			uint64_t seq = atomic_load(&WD.seq);
			if ((seq & 1) && clock_ns(CLOCK_MONOTONIC) - atomic_load(&WD.began_ns) >= WD.timeout_ms * 1000000u) {
				volatile uint64_t *slot = scoreboard_slot(W.cfg->worker_id);
				if (slot) {
					slot[SB_SLOWLOGGED]++;   /* /api/status slowlogged_requests; only this thread writes it */
				}
				trace_dump("slow request");
			}
		}
	}
	return NULL;
}

bool watchdog_start(uint64_t slowlog_timeout_ms, int slowlog_fd)
{
	sigset_t trace, all, php_mask;
	sigemptyset(&trace);
	sigaddset(&trace, TRACE_SIGNAL);
	/* TRACE_SIGNAL is blocked in the PHP thread: only the watchdog's signalfd reads it. If this
	 * fails, the signal keeps its default action (the worker dies, as the master meant). */
	if ((WD.signal_fd = signalfd(-1, &trace, SFD_CLOEXEC)) < 0) {
		askr_log("WARNING", "watchdog: signalfd: %s; no backtrace before a request_timeout kill", strerror(errno));
		return false;
	}
	WD.out_fd = slowlog_fd;
	WD.timeout_ms = slowlog_timeout_ms;
	/* Opened in the worker (a /proc/self/mem fd reads the memory of whoever opened it). */
	if ((WD.mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC)) < 0) {
		askr_log("WARNING", "watchdog: /proc/self/mem: %s; no PHP backtraces", strerror(errno));
	}
	if (slowlog_timeout_ms && (WD.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)) < 0) {
		askr_log("WARNING", "watchdog: timerfd_create: %s; no slowlog", strerror(errno));
	}
	/* The thread starts with every signal blocked (it inherits this mask), so every signal meant
	 * for PHP -- SIGPROF of max_execution_time, Zend's and pcntl's handlers -- still runs on the
	 * PHP thread, where Zend's signal bookkeeping expects it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &php_mask);
	pthread_attr_t attr;
	pthread_t tid;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int rc = pthread_create(&tid, &attr, watchdog_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0) {
		sigaddset(&php_mask, TRACE_SIGNAL);
	}
	pthread_sigmask(SIG_SETMASK, &php_mask, NULL);
	if (rc != 0) {
		askr_log("WARNING", "watchdog: pthread_create: %s; no slowlog", strerror(rc));
		return false;
	}
	WD.running = true;
	return true;
}

void watchdog_request_began(void)
{
	if (!WD.running) {
		return;
	}
	atomic_store(&WD.began_ns, W.req_mono_ns);   /* taken by next_request() just now */
	atomic_fetch_add(&WD.seq, 1);
	if (WD.timer_fd >= 0) {
		struct itimerspec its = { .it_value = {
			.tv_sec = (time_t)(WD.timeout_ms / 1000), .tv_nsec = (long)(WD.timeout_ms % 1000) * 1000000 } };
		timerfd_settime(WD.timer_fd, 0, &its, NULL);
	}
}

void watchdog_request_ended(void)
{
	if (WD.running && (atomic_load(&WD.seq) & 1)) {
		atomic_fetch_add(&WD.seq, 1);
	}
}
