/*
 * askr.h: what the PHP-using files of askr-php share (askr_sapi.c, askr_worker_mode.c,
 * askr_main.c): the PHP headers, the SAPI module and the few functions one file calls in
 * another. The transport they build on is askr_chan.h, which stays PHP-free.
 */

#ifndef ASKR_H
#define ASKR_H

#include "askr_chan.h"

#include <signal.h>

#include "php.h"
#include "SAPI.h"
#include "php_main.h"
#include "php_variables.h"
#include "php_ini.h"
#include "zend_signal.h"
#include "zend_exceptions.h"
#include "ext/session/php_session.h"
#include "ext/spl/spl_exceptions.h"
#include "ext/standard/head.h"

/* askr_sapi.c: the SAPI, the PHP functions for scripts, classic mode. */
extern sapi_module_struct askr_sapi_module;
extern const zend_function_entry askr_functions[];
/* SG(request_info) and SG(server_context) from a decoded REQUEST. */
void request_info_fill(askr_request *r);
/* Start a full PHP request (classic mode, and the worker script's own run). */
bool request_begin(askr_request *r);
/* End the full PHP request (if started), then complete the response. */
void request_finish(askr_request *r, bool started, uint8_t flags);
/* Complete the response on the channel: HEAD, BODY, the request body drained, END. */
void response_end(askr_request *r, uint8_t flags);
/* Classic mode's request loop: the worker's exit code. */
int classic_loop(void);

/* askr_watchdog.c: the slowlog and the backtrace before a request_timeout kill. The master sends
 * TRACE_SIGNAL (askr/master/workers.py) to a worker it is about to kill for request_timeout. */
#define TRACE_SIGNAL (SIGRTMIN + 3)
/* Start the watchdog thread (after fork, in the worker): slowlog_timeout in ms (0 = off), the
 * slowlog file's fd (-1 = the error log). False, logged, when it cannot run. */
bool watchdog_start(uint64_t slowlog_timeout_ms, int slowlog_fd);
/* A client request starts / has ended (its response is complete). */
void watchdog_request_began(void);
void watchdog_request_ended(void);

/* askr_worker_mode.c: askr_handle_request() and the worker script's run. */
PHP_FUNCTION(askr_handle_request);
/* Run the worker script: the worker's exit code. */
int serve_worker_script(void);

#endif
