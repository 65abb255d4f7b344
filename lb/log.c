/*
 * log.c - one line per message to stderr, with a UTC timestamp.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static _Atomic int log_level = LOG_LVL_INFO;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

void
log_set_level(enum log_level lvl)
{
	atomic_store_explicit(&log_level, lvl, memory_order_relaxed);
}

bool
log_enabled(enum log_level lvl)
{
	return (int)lvl <= atomic_load_explicit(&log_level,
	    memory_order_relaxed);
}

void
log_vmsg(enum log_level lvl, int errnum, const char *fmt, va_list ap)
{
	char		 line[2048];
	struct timespec	 ts;
	struct tm	 tm;
	size_t		 n;
	int		 r;
	int		 saved = errno;

	if (!log_enabled(lvl))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s: ",
	    ts.tv_nsec / 1000000, level_names[lvl]);
	n += r > 0 ? (size_t)r : 0;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (errnum != 0) {
		r = snprintf(line + n, sizeof(line) - n, ": %s",
		    strerror(errnum));
		if (r > 0)
			n += (size_t)r;
		if (n > sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* One write per line; a short write to a full pipe is dropped. */
	if (write(STDERR_FILENO, line, n) == -1)
		(void)0;
	errno = saved;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, 0, fmt, ap);
	va_end(ap);
}

#define LOG_FN(fn, lvl, witherr)				\
void								\
fn(const char *fmt, ...)					\
{								\
	va_list ap;						\
	int	e = (witherr) ? errno : 0;			\
								\
	va_start(ap, fmt);					\
	log_vmsg((lvl), e, fmt, ap);				\
	va_end(ap);						\
}

LOG_FN(log_error, LOG_LVL_ERROR, 1)
LOG_FN(log_errorx, LOG_LVL_ERROR, 0)
LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int	e = errno;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

bool
log_ratelimit(struct ratelimit *rl, int burst)
{
	struct timespec ts;
	long		 now, cur;

	/* Wall-clock seconds, as in the log timestamps: "N per second"
	 * then holds for the seconds a reader sees. */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long)ts.tv_sec;
	cur = atomic_load_explicit(&rl->second, memory_order_relaxed);
	if (cur != now && atomic_compare_exchange_strong(&rl->second, &cur,
	    now))
		atomic_store_explicit(&rl->count, 0, memory_order_relaxed);
	if (atomic_fetch_add_explicit(&rl->count, 1,
	    memory_order_relaxed) < burst)
		return true;
	atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
	return false;
}

unsigned long
log_ratelimit_suppressed(struct ratelimit *rl)
{
	return atomic_exchange_explicit(&rl->suppressed, 0,
	    memory_order_relaxed);
}
