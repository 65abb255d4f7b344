/*
 * scale.c - scale conditions and their hook (scale.h). Control loop only.
 *
 * Each tick, for every backend with a condition: its signals, the
 * conditions (with their "for" streaks), the wanted direction (+1 when
 * scale_up has held long enough, else -1 when scale_down has, else 0; the
 * gauge shoal_backend_scale_wanted), and, with a hook, outside the
 * cooldown and with no hook of this backend running, one run of it.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "hist.h"
#include "log.h"
#include "scale.h"
#include "signals.h"

extern char **environ;

#define SCALE_ENV_MAX	(SCALE_NSIGNALS + 8)	/* SHOAL_* variables */

static struct ev_loop		*sloop;
static struct backend_list	*sbackends;
static ev_timer			 tick;

static const char *const action_names[SCALE_ACT_MAX] = {
	[SCALE_ACT_UP] = "up",
	[SCALE_ACT_DOWN] = "down",
};

const char *
scale_action_name(enum scale_action a)
{
	return a < SCALE_ACT_MAX ? action_names[a] : "?";
}

static bool
has_scale(const struct backend *be)
{
	return be->conf.has_scale_up || be->conf.has_scale_down;
}

/* ---- signals ----------------------------------------------------------- */

static void
quantiles(const struct hist_counts *c, double *v)
{
	static const double qs[3] = { 0.50, 0.95, 0.99 };

	for (int i = 0; i < 3; i++) {
		double us = hist_quantile(c, qs[i]);

		v[i] = us < 0 ? NAN : us / 1000.0;	/* ms */
	}
}

/* New sessions per second over the backend's last SCALE_RATE_SLOTS
 * ticks (every session that started a connect counts once). */
static double
session_rate(const struct backend *be)
{
	const struct scale_state	*st = be->scale;
	struct hist_counts		 c;
	unsigned			 oldest;

	if (st == NULL || st->rate_n == 0)
		return NAN;
	hist_read(&be->queue, &c);
	oldest = st->rate_n < SCALE_RATE_SLOTS ? 0 : st->rate_next;
	if (ev_time() - st->rate_at[oldest] < 0.5)
		return NAN;
	return (double)(c.count - st->rate_total[oldest]) /
	    (ev_time() - st->rate_at[oldest]);
}

void
scale_signals(const struct backend *be, double v[SCALE_NSIGNALS])
{
	const struct server	*s;
	struct hist_counts	 c;
	double			 loads = 0, load_max = NAN;
	uint64_t		 sessions = 0;
	int			 up = 0, nload = 0;
	double			 now = ev_time();

	signals_backend_recent(be, LAT_CONNECT, &c);
	quantiles(&c, &v[SCALE_CONNECT_P50]);
	signals_backend_recent(be, LAT_TTFB, &c);
	quantiles(&c, &v[SCALE_TTFB_P50]);
	signals_backend_recent(be, LAT_SESSION, &c);
	quantiles(&c, &v[SCALE_DURATION_P50]);
	signals_queue_recent(be, &c);
	quantiles(&c, &v[SCALE_QUEUE_P50]);
	TAILQ_FOREACH(s, &be->servers, entry) {
		sessions += atomic_load_explicit(&s->cur,
		    memory_order_relaxed);
		if (!server_eligible(s))
			continue;
		up++;
		if (s->load_have && now - s->load_at <= 3.0 *
		    (s->load_interval_ms ? s->load_interval_ms : 1000) /
		    1000.0) {
			loads += s->load;
			nload++;
			if (isnan(load_max) || s->load > load_max)
				load_max = s->load;
		}
	}
	v[SCALE_SESSIONS] = (double)sessions;
	v[SCALE_SESSIONS_PER_SERVER] = up > 0 ? (double)sessions / up : NAN;
	v[SCALE_UP_SERVERS] = up;
	v[SCALE_SERVERS] = (double)be->nservers;
	v[SCALE_QUEUED] = atomic_load_explicit(&be->queued,
	    memory_order_relaxed);
	v[SCALE_SESSION_RATE] = session_rate(be);
	v[SCALE_LOAD_AVG] = nload > 0 ? loads / nload : NAN;
	v[SCALE_LOAD_MAX] = load_max;
}

/* ---- the hook ---------------------------------------------------------- */

static void
put_value(char *buf, size_t len, double v)
{
	if (isnan(v))
		buf[0] = '\0';
	else if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.3f", v);
}

/* One line of the hook's output: logged, up to SCALE_OUT_LINES a run. */
static void
out_line(struct backend *be, struct scale_state *st)
{
	st->line[st->linelen] = '\0';
	for (size_t i = 0; i < st->linelen; i++)
		if ((unsigned char)st->line[i] < 0x20 ||
		    (unsigned char)st->line[i] == 0x7f)
			st->line[i] = '?';
	if (st->lines < SCALE_OUT_LINES)
		log_info("backend %s: scale hook: %s", be->name, st->line);
	else if (st->lines == SCALE_OUT_LINES)
		log_info("backend %s: scale hook: (more output not logged)",
		    be->name);
	st->lines++;
	st->linelen = 0;
}

static void
hook_end(struct backend *be, struct scale_state *st)
{
	double		 now = ev_time();
	enum scale_action a = st->running;
	bool		 ok = st->status == 0;

	ev_timer_stop(sloop, &st->deadline);
	if (st->linelen > 0)
		out_line(be, st);
	st->pid = 0;
	st->runs[a]++;
	if (!ok)
		st->failed[a]++;
	st->have_last = true;
	st->last_action = a;
	st->last_status = st->status;
	st->last_end = now;
	st->last_duration = now - st->started;
	st->cooldown_until = now + be->conf.scale_cooldown_ms / 1000.0;
	if (ok)
		log_info("backend %s: scale %s hook done in %.1f s; next action"
		    " after the cooldown (%.0f s)", be->name,
		    scale_action_name(a), st->last_duration,
		    be->conf.scale_cooldown_ms / 1000.0);
	else
		log_warnx("backend %s: scale %s hook failed (%s %d) after %.1f"
		    " s", be->name, scale_action_name(a), st->status > 128 ?
		    "killed by signal" : "exit status", st->status > 128 ?
		    st->status - 128 : st->status, st->last_duration);
	events_add(EV_KIND_HOOK, be->name, NULL, "scale %s hook %s (%s %d, "
	    "%.1f s)", scale_action_name(a), ok ? "done" : "failed",
	    st->status > 128 ? "signal" : "status", st->status > 128 ?
	    st->status - 128 : st->status, st->last_duration);
}

static void
out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend		*be = w->data;
	struct scale_state	*st = be->scale;
	char			 buf[1024];
	ssize_t			 n;

	(void)revents;
	n = read(w->fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ev_io_stop(loop, w);
		close(st->out_fd);
		st->out_fd = -1;
		if (st->exited)
			hook_end(be, st);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			out_line(be, st);
			continue;
		}
		if (st->linelen < SCALE_OUT_LINE)
			st->line[st->linelen++] = buf[i];
	}
}

static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct backend		*be = w->data;
	struct scale_state	*st = be->scale;
	int			 rs = w->rstatus;

	(void)revents;
	ev_child_stop(loop, w);
	st->exited = true;
	st->status = WIFEXITED(rs) ? WEXITSTATUS(rs) :
	    WIFSIGNALED(rs) ? 128 + WTERMSIG(rs) : 1;
	if (st->out_fd == -1) {
		hook_end(be, st);
		return;
	}
	/* Its output may still be in the pipe; a process it left behind
	 * may hold the pipe open: read for at most SCALE_OUT_GRACE more. */
	ev_timer_stop(loop, &st->deadline);
	ev_timer_set(&st->deadline, SCALE_OUT_GRACE, 0);
	ev_timer_start(loop, &st->deadline);
}

/* Past scale_hook_timeout: kill its process group; the pipe is closed
 * too, as a grandchild may keep it open. */
static void
deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct backend		*be = t->data;
	struct scale_state	*st = be->scale;

	(void)revents;
	if (st->pid == 0)
		return;
	if (st->exited) {		/* exited; something holds the pipe */
		ev_io_stop(loop, &st->out);
		if (st->out_fd != -1)
			close(st->out_fd);
		st->out_fd = -1;
		hook_end(be, st);
		return;
	}
	log_warnx("backend %s: scale %s hook still running after %.0f s: "
	    "killed", be->name, scale_action_name(st->running),
	    be->conf.scale_hook_timeout_ms / 1000.0);
	(void)kill(-st->pid, SIGKILL);
	if (st->out_fd != -1) {
		ev_io_stop(loop, &st->out);
		close(st->out_fd);
		st->out_fd = -1;
	}
}

/*
 * Run the hook: PATH ACTION BACKEND, with SHOAL_* variables, stdin from
 * /dev/null, stdout and stderr into our pipe, its own process group,
 * default signal dispositions and mask. 0, or -1 (logged, counted).
 */
static int
hook_run(struct backend *be, struct scale_state *st, enum scale_action a,
    const double *v, const char *cond)
{
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 none, all;
	char				*argv[4];
	char				 vars[SCALE_ENV_MAX][320], val[64];
	char				 condvar[SCALEEXPR_TEXT_MAX + 32];
	char				**envp;
	size_t				 nenv = 0, nold = 0, k = 0;
	int				 p[2], rc;
	pid_t				 pid;

	snprintf(vars[nenv++], sizeof(vars[0]), "SHOAL_BACKEND=%s",
	    be->name);
	snprintf(vars[nenv++], sizeof(vars[0]), "SHOAL_ACTION=%s",
	    scale_action_name(a));
	snprintf(condvar, sizeof(condvar), "SHOAL_CONDITION=%s", cond);
	for (int i = 0; i < SCALE_NSIGNALS; i++) {
		char	 name[48];
		size_t	 j;

		snprintf(name, sizeof(name), "%s", scaleexpr_signal_name(i));
		for (j = 0; name[j] != '\0'; j++)
			if (name[j] >= 'a' && name[j] <= 'z')
				name[j] = (char)(name[j] - 'a' + 'A');
		put_value(val, sizeof(val), v[i]);
		snprintf(vars[nenv++], sizeof(vars[0]), "SHOAL_%s=%s", name,
		    val);
	}
	while (environ != NULL && environ[nold] != NULL)
		nold++;
	if ((envp = calloc(nold + nenv + 2, sizeof(*envp))) == NULL)
		return -1;
	/* shoal's environment, less the variables we set ourselves */
	for (size_t i = 0; i < nold; i++) {
		const char	*eq = strchr(environ[i], '=');
		size_t		 nl = eq ? (size_t)(eq - environ[i]) : 0;
		bool		 ours = nl == strlen("SHOAL_CONDITION") &&
				    strncmp(environ[i], "SHOAL_CONDITION", nl) ==
				    0;

		for (size_t j = 0; j < nenv && !ours && nl > 0; j++)
			ours = strncmp(vars[j], environ[i], nl + 1) == 0;
		if (!ours)
			envp[k++] = environ[i];
	}
	for (size_t i = 0; i < nenv; i++)
		envp[k++] = vars[i];
	envp[k++] = condvar;
	envp[k] = NULL;
	argv[0] = be->conf.scale_hook;
	argv[1] = (char *)(uintptr_t)scale_action_name(a);
	argv[2] = be->name;
	argv[3] = NULL;
	if (pipe2(p, O_CLOEXEC) == -1) {
		log_warn("backend %s: scale hook: pipe", be->name);
		free(envp);
		return -1;
	}
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	rc = posix_spawn(&pid, be->conf.scale_hook, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(envp);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		errno = rc;
		log_warn("backend %s: cannot run scale hook %s", be->name,
		    be->conf.scale_hook);
		st->runs[a]++;
		st->failed[a]++;
		return -1;
	}
	(void)fcntl(p[0], F_SETFL, O_NONBLOCK);
	st->pid = pid;
	st->running = a;
	st->started = ev_time();
	st->exited = false;
	st->status = 0;
	st->linelen = 0;
	st->lines = 0;
	st->out_fd = p[0];
	ev_io_set(&st->out, p[0], EV_READ);
	ev_io_start(sloop, &st->out);
	ev_child_set(&st->child, pid, 0);
	ev_child_start(sloop, &st->child);
	ev_timer_set(&st->deadline, be->conf.scale_hook_timeout_ms / 1000.0,
	    0);
	ev_timer_start(sloop, &st->deadline);
	return 0;
}

/* ---- the tick ---------------------------------------------------------- */

static struct scale_state *
state_of(struct backend *be)
{
	struct scale_state *st;

	if (be->scale != NULL)
		return be->scale;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->out_fd = -1;
	ev_child_init(&st->child, child_cb, 0, 0);
	ev_io_init(&st->out, out_cb, -1, EV_READ);
	ev_timer_init(&st->deadline, deadline_cb, 0, 0);
	st->child.data = st->out.data = st->deadline.data = be;
	be->scale = st;
	return st;
}

/* A short text of the signals a condition reads: "ttfb_p95=412.3ms". */
static void
used_values(const struct scaleexpr *e, const double *v, char *buf,
    size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < SCALE_NSIGNALS && off < len; i++) {
		if (!(e->used & (1u << i)))
			continue;
		if (isnan(v[i]))
			off += (size_t)snprintf(buf + off, len - off, "%s%s=-",
			    off ? " " : "", scaleexpr_signal_name(i));
		else
			off += (size_t)snprintf(buf + off, len - off,
			    "%s%s=%.4g%s", off ? " " : "",
			    scaleexpr_signal_name(i), v[i],
			    scaleexpr_signal_kind(i) == SCALE_KIND_TIME ?
			    "ms" : "");
	}
}

static void
backend_tick(struct backend *be, double now)
{
	struct scale_state	*st;
	struct hist_counts	 c;
	double			 v[SCALE_NSIGNALS];
	uint64_t		 now_ms = (uint64_t)(now * 1000);
	bool			 fire[SCALE_ACT_MAX] = { false, false };
	const struct scaleexpr	*e[SCALE_ACT_MAX] = { &be->conf.scale_up,
	    &be->conf.scale_down };
	bool			 has[SCALE_ACT_MAX] = {
	    be->conf.has_scale_up, be->conf.has_scale_down };
	char			 cond[SCALEEXPR_TEXT_MAX], vals[512];
	int			 wanted = 0;

	if ((st = state_of(be)) == NULL)
		return;
	scale_signals(be, v);
	for (int a = 0; a < SCALE_ACT_MAX; a++) {
		bool holds = has[a] && scaleexpr_eval(e[a], v);

		if (!has[a]) {
			scaleexpr_for_reset(&st->hold[a]);
			continue;
		}
		fire[a] = scaleexpr_for_update(&st->hold[a], holds, now_ms,
		    e[a]->for_ms);
	}
	if (fire[SCALE_ACT_UP])
		wanted = 1;
	else if (fire[SCALE_ACT_DOWN])
		wanted = -1;
	if (wanted != st->wanted) {
		enum scale_action a = wanted > 0 ? SCALE_ACT_UP :
		    SCALE_ACT_DOWN;

		if (wanted != 0) {
			scaleexpr_format(e[a], cond, sizeof(cond));
			used_values(e[a], v, vals, sizeof(vals));
			log_info("backend %s: scale %s wanted: %s (%s)",
			    be->name, scale_action_name(a), cond, vals);
			events_add(EV_KIND_SCALE, be->name, NULL, "scale %s "
			    "wanted: %s (%s)", scale_action_name(a), cond,
			    vals);
		} else if (!st->acted) {
			log_info("backend %s: scale no longer wanted (its "
			    "condition stopped holding)", be->name);
		}
		st->acted = false;
		st->wanted = wanted;
	}
	if (wanted != 0 && be->conf.scale_hook[0] != '\0' && st->pid == 0 &&
	    now >= st->cooldown_until) {
		enum scale_action a = wanted > 0 ? SCALE_ACT_UP :
		    SCALE_ACT_DOWN;

		scaleexpr_format(e[a], cond, sizeof(cond));
		used_values(e[a], v, vals, sizeof(vals));
		log_info("backend %s: running scale %s hook %s (%s; %s; %d "
		    "up servers)", be->name, scale_action_name(a),
		    be->conf.scale_hook, cond, vals,
		    (int)v[SCALE_UP_SERVERS]);
		events_add(EV_KIND_HOOK, be->name, NULL, "scale %s hook "
		    "started (%s)", scale_action_name(a), vals);
		(void)hook_run(be, st, a, v, cond);
		/* A new action needs a whole new streak: the gauge goes back
		 * to 0 at the next tick, until the condition has held again. */
		scaleexpr_for_reset(&st->hold[SCALE_ACT_UP]);
		scaleexpr_for_reset(&st->hold[SCALE_ACT_DOWN]);
		st->acted = true;
		if (st->pid == 0)	/* could not start: cool down anyway */
			st->cooldown_until = now +
			    be->conf.scale_cooldown_ms / 1000.0;
	}
	/* session_rate's ring */
	hist_read(&be->queue, &c);
	st->rate_total[st->rate_next] = c.count;
	st->rate_at[st->rate_next] = now;
	st->rate_next = (st->rate_next + 1) % SCALE_RATE_SLOTS;
	if (st->rate_n < SCALE_RATE_SLOTS)
		st->rate_n++;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct backend	*be;
	double		 now = ev_time();

	(void)loop;
	(void)t;
	(void)revents;
	TAILQ_FOREACH(be, sbackends, entry) {
		if (has_scale(be))
			backend_tick(be, now);
		else if (be->scale != NULL && be->scale->wanted != 0)
			be->scale->wanted = 0;	/* a reload removed them */
	}
}

void
scale_start(struct ev_loop *loop, struct backend_list *backends)
{
	sloop = loop;
	sbackends = backends;
	ev_timer_init(&tick, tick_cb, SCALE_TICK, SCALE_TICK);
	ev_timer_start(loop, &tick);
	ev_unref(loop);
}

void
scale_stop(void)
{
	struct backend *be;

	if (sloop == NULL)
		return;
	ev_ref(sloop);
	ev_timer_stop(sloop, &tick);
	TAILQ_FOREACH(be, sbackends, entry) {
		struct scale_state *st = be->scale;

		if (st == NULL)
			continue;
		if (st->pid != 0 && !st->exited) {
			log_info("backend %s: stopping: scale hook (pid %ld) "
			    "sent SIGTERM", be->name, (long)st->pid);
			(void)kill(-st->pid, SIGTERM);
		}
		ev_child_stop(sloop, &st->child);
		ev_io_stop(sloop, &st->out);
		ev_timer_stop(sloop, &st->deadline);
		if (st->out_fd != -1)
			close(st->out_fd);
		free(st);
		be->scale = NULL;
	}
	sloop = NULL;
}
