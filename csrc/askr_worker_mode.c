/*
 * askr_worker_mode.c: worker mode -- the worker script boots the app once, then loops in
 * askr_handle_request($handler). Each handled request gets a fresh request context inside the
 * one long PHP request of the script: the parts of php_request_startup/shutdown that are
 * per-request state (context_begin/context_end). docs/worker-mode.md lists what is and is not
 * reset.
 *
 * It is a file of its own because context_begin() and context_end() follow php-src's
 * main/main.c step by step: re-diff them against php_request_startup() and
 * php_request_shutdown() at each PHP upgrade. The rest of the SAPI is askr_sapi.c.
 */

#define _GNU_SOURCE   /* memrchr (used by PHP headers) */
#include <errno.h>
#include <stdio.h>

#include "askr.h"

/* Worker mode's own state, set up once per worker. */
static struct {
	/* Modules whose per-request state lives in their RINIT/RSHUTDOWN: filter keeps raw copies
	 * of the input arrays (filter_input), session its id, status and $_SESSION. */
	zend_module_entry *reset_modules[2];
	/* Limits one request may raise with ini_set() (a long export, a big import) return to what
	 * the worker had when it first asked for a request, so they do not carry over to every
	 * later one. Other ini_set() values are kept (docs/worker-mode.md). */
	struct {
		const char *name;
		char boot[64];
		zend_string *key;
	} limits[2];
} WM = { .limits = { { "memory_limit", "", NULL }, { "max_execution_time", "", NULL } } };

static void reset_modules_find(void)
{
	WM.reset_modules[0] = zend_hash_str_find_ptr(&module_registry, ZEND_STRL("filter"));
	WM.reset_modules[1] = zend_hash_str_find_ptr(&module_registry, ZEND_STRL("session"));
}

static void module_rshutdown(zend_module_entry *m)
{
	if (m && m->request_shutdown_func) {
		zend_try {
			m->request_shutdown_func(m->type, m->module_number);
		} zend_end_try();
	}
}

static void reset_modules_shutdown(void)
{
	/* session's RSHUTDOWN also drops user save handlers (session_set_save_handler); an app
	 * sets those once at boot, so they are kept across requests. */
	zval saved[PS_NUM_APIS];
	for (int i = 0; i < PS_NUM_APIS; i++) {
		ZVAL_COPY(&saved[i], &PS(mod_user_names).names[i]);
	}
	for (size_t i = 0; i < sizeof(WM.reset_modules) / sizeof(*WM.reset_modules); i++) {
		module_rshutdown(WM.reset_modules[i]);
	}
	for (int i = 0; i < PS_NUM_APIS; i++) {
		zval_ptr_dtor(&PS(mod_user_names).names[i]);
		ZVAL_COPY_VALUE(&PS(mod_user_names).names[i], &saved[i]);
	}
	/* The symbol table still holds $_SESSION; the next request must not see it. */
	zend_hash_str_del(&EG(symbol_table), ZEND_STRL("_SESSION"));
}

static void reset_modules_startup(void)
{
	for (size_t i = 0; i < sizeof(WM.reset_modules) / sizeof(*WM.reset_modules); i++) {
		zend_module_entry *m = WM.reset_modules[i];
		if (m && m->request_startup_func) {
			m->request_startup_func(m->type, m->module_number);
		}
	}
}

/* Make `r` the current context: SAPI state, output layer, superglobals.
 *
 * Adapted from php-src main/main.c php_request_startup(), PHP 8.2: the same steps in the same
 * order, all inside one zend_try as there. Left out, because they belong to the worker
 * script's long request and stay up across handled requests: zend_activate() (compiler,
 * executor), zend_signal_activate(), the max_input_time timeout (askr_handle_request() arms
 * max_execution_time itself), and zend_activate_modules(), of which only the modules in
 * WM.reset_modules run their RINIT again. */
static bool context_begin(askr_request *r)
{
	volatile bool ok = true;
	/* Called from askr_handle_request(), but no script runs while a request starts (as under
	 * php-fpm): errors raised now say "in Unknown on line 0", not the worker script's line. */
	zend_execute_data *caller = EG(current_execute_data);
	EG(current_execute_data) = NULL;
	request_info_fill(r);
	zend_try {
		/* As php_request_startup() has them while the request's input is parsed: errors raised
		 * now are "PHP Request Startup" ones (display_startup_errors decides their display), and
		 * hooks that only run before modules activate do run (session upload progress). */
		PG(during_request_startup) = 1;
		PG(modules_activated) = 0;
		PG(in_error_log) = 0;
		PG(in_user_include) = 0;
		php_output_activate();
		PG(header_is_being_sent) = 0;
		PG(connection_status) = PHP_CONNECTION_NORMAL;
		sapi_activate();           /* headers, status, reads POST data for the POST globals */
		if (PG(expose_php)) {
			sapi_add_header(SAPI_PHP_VERSION_HEADER, sizeof(SAPI_PHP_VERSION_HEADER) - 1, 1);
		}
		if (PG(output_handler) && PG(output_handler)[0]) {
			zval handler;
			ZVAL_STRING(&handler, PG(output_handler));
			php_output_start_user(&handler, 0, PHP_OUTPUT_HANDLER_STDFLAGS);
			zval_ptr_dtor(&handler);
		} else if (PG(output_buffering)) {
			php_output_start_user(NULL, PG(output_buffering) > 1 ? PG(output_buffering) : 0,
				PHP_OUTPUT_HANDLER_STDFLAGS);
		} else if (PG(implicit_flush)) {
			php_output_set_implicit_flush(1);
		}
		php_hash_environment();    /* $_GET $_POST $_COOKIE $_FILES */
		if (!r->is_boot) {
			/* Scripts were compiled long ago, so the compiler will not create these on first
			 * use (auto_globals_jit): create them now. */
			zend_is_auto_global_str(ZEND_STRL("_SERVER"));
			zend_is_auto_global_str(ZEND_STRL("_REQUEST"));
		}
		reset_modules_startup();
	} zend_catch {
		ok = false;
	} zend_end_try();
	EG(current_execute_data) = caller;
	PG(modules_activated) = 1;
	PG(during_request_startup) = 0;  /* php_execute_script() clears it for a classic request */
	SG(sapi_started) = 1;
	return ok;
}

/* End the current context `r`: flush output and headers, write the session, free uploads and
 * the request body, drop the superglobals; for a client request, complete its response.
 *
 * Adapted from php-src main/main.c php_request_shutdown(), PHP 8.2 (its step numbers in the
 * comments below), each step guarded by zend_try as there, except one difference: php-src
 * frees the superglobals (8) inside a zend_try and before the SAPI shutdown (12); here they go
 * after sapi_deactivate(), unguarded. Left out: shutdown functions and destructors (1, 2, 7:
 * they run once, when the worker script ends), the timeout (4: askr_handle_request() unsets
 * it), zend_deactivate() and the memory manager (9-15): the script's request goes on. */
static void context_end(askr_request *r)
{
	uint64_t peak = r->is_boot ? 0 : (uint64_t)zend_memory_peak_usage(false);
	zend_try {
		php_output_end_all();      /* 3 */
	} zend_end_try();
	reset_modules_shutdown();      /* 5; the session is written before the client sees END */
	zend_try {
		php_output_deactivate();   /* 6; sends the headers if nothing did yet */
	} zend_end_try();
	if (SG(request_info).request_body) {
		php_stream_close(SG(request_info).request_body);
		SG(request_info).request_body = NULL;
	}
	zend_try {
		sapi_deactivate();         /* 12; also deletes uploaded files nobody moved */
	} zend_end_try();
	for (int i = 0; i < NUM_TRACK_VARS; i++) {   /* 8 */
		zval_ptr_dtor(&PG(http_globals)[i]);
		ZVAL_UNDEF(&PG(http_globals)[i]);
	}
	zend_set_memory_limit(PG(memory_limit));
	if (!r->is_boot) {
		response_end(r, end_flags());
		request_done(peak);
		scoreboard_set(W.cfg->worker_id, 0);
		watchdog_request_ended();
	}
	r->active = false;
	SG(server_context) = NULL;
}

static void request_limits_remember(void)
{
	for (size_t i = 0; i < sizeof(WM.limits) / sizeof(*WM.limits); i++) {
		const char *v = zend_ini_string(WM.limits[i].name, strlen(WM.limits[i].name), 0);
		snprintf(WM.limits[i].boot, sizeof(WM.limits[i].boot), "%s", v ? v : "");
		WM.limits[i].key = zend_string_init_interned(WM.limits[i].name,
			strlen(WM.limits[i].name), 1);
	}
}

static void request_limits_restore(void)
{
	for (size_t i = 0; i < sizeof(WM.limits) / sizeof(*WM.limits); i++) {
		const char *v = zend_ini_string(WM.limits[i].name, strlen(WM.limits[i].name), 0);
		if (WM.limits[i].key && v && strcmp(v, WM.limits[i].boot)) {
			zend_alter_ini_entry_chars(WM.limits[i].key, WM.limits[i].boot,
				strlen(WM.limits[i].boot), PHP_INI_USER, PHP_INI_STAGE_RUNTIME);
		}
	}
}

/* PHP keeps the last error for error_get_last(); one request's must not surface in the next. */
static void clear_last_error(void)
{
	if (PG(last_error_message)) {
		zend_string_release(PG(last_error_message));
		PG(last_error_message) = NULL;
	}
	if (PG(last_error_file)) {
		zend_string_release(PG(last_error_file));
		PG(last_error_file) = NULL;
	}
	PG(last_error_type) = 0;
	PG(last_error_lineno) = 0;
}

/* askr_handle_request(callable $handler): bool -- see docs/worker-mode.md. */
PHP_FUNCTION(askr_handle_request)
{
	zend_fcall_info fci;
	zend_fcall_info_cache fcc;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_FUNC(fci, fcc)
	ZEND_PARSE_PARAMETERS_END();

	if (!W.script || W.in_handler) {
		zend_throw_exception(spl_ce_RuntimeException, W.script
			? "askr_handle_request() cannot be called from inside a request handler"
			: "askr_handle_request() is only available to a worker script ([worker] script in askr.toml)", 0);
		RETURN_THROWS();
	}
	if (!W.hello_sent) {
		request_limits_remember();
		if (!send_hello()) {
			RETURN_FALSE;          /* the front is gone */
		}
	}
	if (W.must_exit || stop_requested()) {
		RETURN_FALSE;
	}
	context_end(&W.boot);
	zend_unset_timeout();          /* waiting is not execution time */
	int rc = next_request();
	if (rc <= 0) {
		if (rc < 0) {
			W.must_exit = true;
		}
		W.stop = true;             /* told to, or the queue/front is gone: this worker is done */
		context_begin(&W.boot);
		RETURN_FALSE;
	}
	watchdog_request_began();
	if (!context_begin(&W.req)) {
		askr_log("ERROR", "could not set up a request context; worker exits after this response");
		W.must_exit = true;
		context_end(&W.req);
		context_begin(&W.boot);
		RETURN_FALSE;
	}
	zend_set_timeout(INI_INT("max_execution_time"), 0);
	zend_memory_reset_peak_usage();  /* the request's own peak (scoreboard), not the boot's */

	zval retval;
	volatile bool bailed = false;
	fci.retval = &retval;
	W.in_handler = true;
	zend_try {
		if (zend_call_function(&fci, &fcc) == SUCCESS) {
			zval_ptr_dtor(&retval);
		}
	} zend_catch {
		bailed = true;
	} zend_end_try();
	W.in_handler = false;
	/* unclean_shutdown: a bailout happened even if something swallowed it on the way (the
	 * memory-limit error is caught and re-thrown inside the allocator, and does not always
	 * reach us as a bailout). */
	if (bailed || CG(unclean_shutdown)) {
		/* A fatal error (or timeout, or memory exhausted) unwound the handler: PHP's state is
		 * not trustworthy. Unwind the worker script too; serve_worker_script() answers this
		 * request through the normal shutdown (status 500 unless the app sent one) and exits. */
		W.fatal_in_handler = true;
		W.must_exit = true;
		zend_bailout();
	}
	if (EG(exception)) {
		/* An uncaught exception (or exit()) ends this request only: logged as PHP logs it,
		 * 500 unless output already started. The worker goes on. */
		zend_exception_error(EG(exception), E_ERROR);
		clear_last_error();
		EG(exit_status) = 0;
	}
	zend_unset_timeout();
	request_limits_restore();
	context_end(&W.req);
	recycle_check();               /* the client has its response */
	context_begin(&W.boot);
	RETURN_TRUE;
}

/* The worker script's own context: $_SERVER as a request for the script would have it. */
static bool boot_context_init(askr_request *r, const char *script)
{
	char cwd[4096];
	const char *base = strrchr(script, '/');
	char self[1024];
	snprintf(self, sizeof(self), "/%s", base ? base + 1 : script);
	if (!getcwd(cwd, sizeof(cwd))) {
		cwd[0] = '\0';
	}
	const char *kv[] = {
		"SCRIPT_FILENAME", script, "SCRIPT_NAME", self, "PHP_SELF", self, "DOCUMENT_ROOT", cwd,
		"SERVER_SOFTWARE", "Askr",
	};
	size_t len = 0;
	for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++) {
		len += strlen(kv[i]) + 1;
	}
	if (!grow(&r->payload, &r->payload_cap, len + 2)) {
		return false;
	}
	char *p = r->payload;
	for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++) {
		size_t n = strlen(kv[i]) + 1;
		memcpy(p, kv[i], n);
		p += n;
	}
	r->is_boot = true;
	r->chan = &W.chans[0];  /* the boot context has no client: nothing is sent for it */
	return parse_request(r, (uint32_t)len);
}

int serve_worker_script(void)
{
	char script[4096];
	if (!realpath(W.script, script)) {
		snprintf(W.last_error, sizeof(W.last_error), "worker script %s: %s", W.script, strerror(errno));
		askr_log("ERROR", "%s", W.last_error);
		report_boot_failure(W.last_error);
		return EXIT_BOOT_FAILED;
	}
	if (!boot_context_init(&W.boot, script) || !request_begin(&W.boot)) {
		askr_log("ERROR", "could not start the worker script's request");
		report_boot_failure("php_request_startup failed");
		return EXIT_BOOT_FAILED;
	}
	reset_modules_find();
	zend_file_handle fh;
	zend_stream_init_filename(&fh, script);
	zend_try {
		php_execute_script(&fh);
	} zend_end_try();
	zend_destroy_file_handle(&fh);

	if (W.fatal_in_handler) {
		/* The handler's request is still current: shutdown functions run (frameworks render
		 * their error page there), output and headers go to that client, then END. */
		askr_log("ERROR", "fatal error in the request handler; this worker exits and is replaced");
		scoreboard_set(W.cfg->worker_id, 0);
		request_finish(&W.req, true, END_FLAG_EXITING);
		return 1;
	}
	bool booted = W.hello_sent;
	request_finish(&W.boot, true, 0);
	if (!booted) {
		const char *why = W.last_error[0] ? W.last_error
			: "the worker script ended without calling askr_handle_request()";
		report_boot_failure(why);  /* the master logs it, with what it does about it */
		return EXIT_BOOT_FAILED;
	}
	if (!W.must_exit && !stop_requested()) {
		askr_log("INFO", "worker script returned after %lu requests; a new worker replaces it", W.served);
	}
	return W.must_exit ? 1 : 0;
}
