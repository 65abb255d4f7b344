/*
 * log.h - logging to stderr, OpenBSD style.
 *
 * log_warn() appends strerror(errno), log_warnx() does not; fatal() and
 * fatalx() are for startup only. Each line is written with one write(2), so
 * lines from different threads never interleave. Lines look like
 * "2026-11-22T19:40:00.123Z info: message".
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "conf.h"

#define LOG_FMT(a, b)	__attribute__((format(printf, a, b)))

/* Set the most verbose level that is written (default info). */
void	log_set_level(enum log_level);
bool	log_enabled(enum log_level);

void	log_error(const char *, ...) LOG_FMT(1, 2);	/* + strerror */
void	log_errorx(const char *, ...) LOG_FMT(1, 2);
void	log_warn(const char *, ...) LOG_FMT(1, 2);	/* + strerror */
void	log_warnx(const char *, ...) LOG_FMT(1, 2);
void	log_info(const char *, ...) LOG_FMT(1, 2);
void	log_debug(const char *, ...) LOG_FMT(1, 2);
void	log_msg(enum log_level, const char *, ...) LOG_FMT(2, 3);
void	log_vmsg(enum log_level, int errnum, const char *, va_list)
	    LOG_FMT(3, 0);
__attribute__((noreturn))
void	fatal(const char *, ...) LOG_FMT(1, 2);	/* + strerror, exit 1 */
__attribute__((noreturn))
void	fatalx(const char *, ...) LOG_FMT(1, 2);	/* exit 1 */

/*
 * A rate limiter for messages the network can trigger: log_ratelimit()
 * returns true at most `burst` times per second per limiter, and counts
 * what it suppressed (reported with the next allowed message by the caller
 * through log_ratelimit_suppressed()). Safe from any thread.
 */
struct ratelimit {
	_Atomic long		 second;	/* the current second */
	_Atomic int		 count;		/* messages in it */
	_Atomic unsigned long	 suppressed;	/* since the last allowed */
};

bool		 log_ratelimit(struct ratelimit *, int burst);
unsigned long	 log_ratelimit_suppressed(struct ratelimit *);

#endif /* SHOAL_LOG_H */
